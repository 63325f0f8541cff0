"""DeltaXYWHBBoxCoder and TBLRBBoxCoder encode/decode."""
import re

from unidetector.ops import DeltaXYWHBBoxCoder, TBLRBBoxCoder


def _wh_ratio_clip(g, key):
    """The custom wh_ratio_clip of a decode output, as stated in its manifest meaning."""
    return float(re.search(r"wh_ratio_clip=([0-9.eE-]+)", g.case["arrays"][key]["meaning"]).group(1))


def check(g):
    max_shape = g["in/img_shape"]
    for name, cfg in g.config["coders"].items():
        cfg = dict(cfg)
        kind = cfg.pop("type")
        p = f"out/{name}_"
        if kind == "DeltaXYWHBBoxCoder":
            coder = DeltaXYWHBBoxCoder(**cfg)
            proposals = g["in/proposals"]
            encoded = coder.encode(proposals, g["in/gts"])
            g.assert_close(p + "encode", encoded)
            g.assert_close(p + "decode_clip", coder.decode(proposals, g["in/deltas"], max_shape=max_shape))
            g.assert_close(p + "decode_noclip", coder.decode(proposals, g["in/deltas"]))
            g.assert_close(p + "decode_2cls", coder.decode(proposals, g["in/deltas_2cls"], max_shape=max_shape))
            g.assert_close(p + "decode_of_encode", coder.decode(proposals, encoded))
            for key in g.keys(p + "decode_ratio"):
                g.assert_close(key, coder.decode(proposals, g["in/deltas"], max_shape=max_shape,
                                                 wh_ratio_clip=_wh_ratio_clip(g, key)))
        elif kind == "TBLRBBoxCoder":
            coder = TBLRBBoxCoder(**cfg)
            priors = g["in/priors"]
            g.assert_close(p + "encode", coder.encode(priors, g["in/tblr_gts"]))
            g.assert_close(p + "decode_clip", coder.decode(priors, g["in/tblr_pred"], max_shape=max_shape))
            g.assert_close(p + "decode_noclip", coder.decode(priors, g["in/tblr_pred"]))
        else:
            raise AssertionError(f"coders case: unknown coder type {kind!r}")
