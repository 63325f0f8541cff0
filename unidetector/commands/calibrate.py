"""Write the class prior used by calibrated open-world inference (``BBoxHeadCLIPInference``).

  unidet calibrate raw_lvis_results.pkl --out lvis_prior.npy [--smoothing 10]
  unidet calibrate --from-cat-info train_cat_info.json --out prior.npy [--smoothing 10]

From raw results (official, transductive): prior_c = #detections of class c over all images of the
uncalibrated model's raw results (``unidet test ... --out raw.pkl``) + smoothing. From a cat-info json:
prior_c = training image_count_c + smoothing. The .npy (one value per class) is used as is by
``resultfile=...npy``; the model then scales p_c by w_c / mean(w), w = prior^-gamma.
"""
from __future__ import annotations

HELP = "compute the calibration class prior (.npy) from raw results or a cat-info json"


def add_arguments(parser):
    parser.add_argument("raw_results", nargs="?", help="raw results pickle (per image, per class (n, 5) arrays)")
    parser.add_argument("--from-cat-info", metavar="FILE", help="cat-info json (image_count) instead of results")
    parser.add_argument("--out", required=True, help="output .npy prior")
    parser.add_argument("--smoothing", type=float, default=None,
                        help="added to every count (default 10, as the first official commit)")
    parser.set_defaults(_parser=parser)


def run(args) -> int:
    from ..calibration import (DEFAULT_SMOOTHING, CalibrationError, class_counts_from_cat_info, class_counts_from_results,
                               save_prior)

    if (args.raw_results is None) == (args.from_cat_info is None):
        args._parser.error("give either RAW_RESULTS or --from-cat-info FILE")
    smoothing = DEFAULT_SMOOTHING if args.smoothing is None else args.smoothing
    counts = (class_counts_from_cat_info(args.from_cat_info) if args.from_cat_info
              else class_counts_from_results(args.raw_results))
    prior = counts + smoothing
    if (prior <= 0).any():
        raise CalibrationError(f"{int((prior <= 0).sum())} of {len(prior)} classes have a zero prior "
                               f"(no detections in {args.raw_results or args.from_cat_info}): use --smoothing > 0")
    path = save_prior(args.out, prior)
    zero = int((counts == 0).sum())
    print(f"wrote {path}: {len(prior)} classes, counts total {int(counts.sum())}, {zero} classes with zero count, "
          f"smoothing {smoothing:g}, prior range [{prior.min():g}, {prior.max():g}]")
    return 0
