#!/usr/bin/env bash
# The whole real UniDetector experiment: COCO + Objects365 training -> open-world LVIS v0.5 evaluation.
#
#   DATA_ROOT=/datasets GPUS=8 experiments/run_coco_objects365_lvis_experiment.sh [WORK_DIR]
#
# Steps (each skipped when its output exists, so a re-run continues where it stopped; training resumes
# from WORK_DIR/stage{1,2}/latest.pkl):
#   0. check every input file; convert the torchvision ResNet-50; class-embedding .npy files (unidet embed
#      when missing and CLIP_RN50 is given); Objects365 cat-info json
#   1. stage 1 (CLN) training on COCO val35k + Objects365 subset         -> stage1/epoch_$EPOCHS1.pkl
#   2. proposals for COCO, Objects365 and LVIS v0.5 val                  -> rp_train_0.pkl rp_train_1.pkl rp_val_ow.pkl
#   3. stage 2 (partitioned CLIP RoI head) training, RegionCLIP init     -> stage2/epoch_$EPOCHS2.pkl
#   4. raw LVIS results (no calibration) + bbox AP                       -> raw_lvis_results.pkl
#   5. unidet calibrate                                                  -> lvis_prior.npy
#   6. calibrated LVIS results + bbox AP (APr/APc/APf)                   -> calibrated_lvis_results.pkl
# Layout of DATA_ROOT and of the weights: docs/real_data.md.
#
# Environment: DATA_ROOT (required); WEIGHTS_DIR (default $DATA_ROOT/weights); RESNET50_PTH (default
# $WEIGHTS_DIR/resnet50-0676ba61.pth); REGIONCLIP_PTH (default $WEIGHTS_DIR/regionclip_pretrained-cc_rn50_mmdet.pth);
# EMB_DIR (default <repo>/clip_embeddings); CLIP_RN50 (OpenAI RN50.pt, only to create missing embeddings);
# GPUS (processes; >1 launches `mpirun -np $GPUS`); MPIRUN_ARGS (extra mpirun flags, e.g. a hostfile);
# EPOCHS1/EPOCHS2 (default 12); UNIDET (default `unidet`); CHECK_ONLY=1 (only check the inputs).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${DATA_ROOT:-}" ]; then
    echo "error: set DATA_ROOT=/path/to/datasets (layout: docs/real_data.md)" >&2
    exit 2
fi
DATA_ROOT=$(cd "$DATA_ROOT" 2>/dev/null && pwd) || { echo "error: DATA_ROOT=$DATA_ROOT is not a folder" >&2; exit 2; }
WORK=${1:-${WORK_DIR:-$REPO/work_dirs/coco_objects365_lvis}}
WEIGHTS_DIR=${WEIGHTS_DIR:-$DATA_ROOT/weights}
RESNET50_PTH=${RESNET50_PTH:-$WEIGHTS_DIR/resnet50-0676ba61.pth}
REGIONCLIP_PTH=${REGIONCLIP_PTH:-$WEIGHTS_DIR/regionclip_pretrained-cc_rn50_mmdet.pth}
EMB_DIR=${EMB_DIR:-$REPO/clip_embeddings}
GPUS=${GPUS:-1}
EPOCHS1=${EPOCHS1:-12}
EPOCHS2=${EPOCHS2:-12}
UNIDET=${UNIDET:-unidet}
CFG1=$REPO/configs/coco_objects365_1ststage_rpn.py
CFG2=$REPO/configs/coco_objects365_2ndstage_roi.py
CFG_LVIS=$REPO/configs/lvis_inference_with_calibration.py

COCO_ANN=$DATA_ROOT/coco/annotations/instances_valminusminival2014.json
COCO_IMG=$DATA_ROOT/coco/images/val2014
O365_ANN=$DATA_ROOT/objects365/annotations/zhiyuan_objv2_train.1@3.5.json
O365_CATINFO=$DATA_ROOT/objects365/annotations/zhiyuan_objv2_train.1@3.5_cat_info.json
O365_IMG=$DATA_ROOT/objects365/train
LVIS_ANN=$DATA_ROOT/lvis_v0.5/annotations/lvis_v0.5_val.json
LVIS_IMG=$DATA_ROOT/lvis_v0.5/val2017
EMB_COCO=$EMB_DIR/coco_clip_a+cname_rn50_manyprompt.npy
EMB_O365=$EMB_DIR/objects365_clip_a+cname_rn50_manyprompt.npy
EMB_LVIS=$EMB_DIR/lvis_v0.5_clip_a+cname_rn50_manyprompt.npy

log() { echo "[experiment $(date +%H:%M:%S)] $*"; }
launch() {  # unidet sub-command, on $GPUS MPI processes when GPUS > 1
    if [ "$GPUS" -gt 1 ]; then
        command -v mpirun >/dev/null || { echo "error: GPUS=$GPUS needs mpirun (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 2; }
        # shellcheck disable=SC2086
        mpirun -np "$GPUS" ${MPIRUN_ARGS:-} "$UNIDET" "$@"
    else
        "$UNIDET" "$@"
    fi
}

# ---------------------------------------------------------------- 0. inputs
missing=()
need() {  # need PATH DESCRIPTION [HOW TO GET IT]
    if [ ! -e "$1" ]; then missing+=("  $1"$'\n'"      expected: $2${3:+$'\n'"      how: $3"}"); fi
}
need "$COCO_ANN" "COCO val35k annotations (instances_valminusminival2014.json)" \
     "from the COCO 2014 'minival' release used by Detectron (see docs/real_data.md)"
need "$COCO_IMG" "COCO val2014 images folder" "http://images.cocodataset.org/zips/val2014.zip"
need "$O365_ANN" "Objects365 v2 3.5% training subset" \
     "unidet data subset --ann $DATA_ROOT/objects365/annotations/zhiyuan_objv2_train.json --percent 3.5 --seed 1"
need "$O365_IMG" "Objects365 v2 training images (images/v1/patch0..15, v2/patch16..49)"
need "$LVIS_ANN" "LVIS v0.5 val annotations" "https://www.lvisdataset.org/dataset (lvis_v0.5_val.json)"
need "$LVIS_IMG" "LVIS v0.5 val images = COCO val2017 images" "http://images.cocodataset.org/zips/val2017.zip"
need "$RESNET50_PTH" "torchvision ImageNet ResNet-50 weights (stage-1 backbone)" \
     "https://download.pytorch.org/models/resnet50-0676ba61.pth (or set RESNET50_PTH)"
need "$REGIONCLIP_PTH" "RegionCLIP RN50 weights in mmdet format (stage-2 init)" \
     "official UniDetector README link (or set REGIONCLIP_PTH)"
for emb in "$EMB_COCO" "$EMB_O365" "$EMB_LVIS"; do
    if [ ! -e "$emb" ] && [ -z "${CLIP_RN50:-}" ]; then
        need "$emb" "CLIP RN50 class embeddings (official clip_embeddings/ folder)" \
             "copy the official clip_embeddings/*.npy into $EMB_DIR, or set CLIP_RN50=/path/RN50.pt to create them"
    fi
done
[ -z "${CLIP_RN50:-}" ] || need "$CLIP_RN50" "OpenAI CLIP RN50.pt (CLIP_RN50)"
if [ ${#missing[@]} -gt 0 ]; then
    echo "error: ${#missing[@]} required input(s) missing:" >&2
    printf '%s\n' "${missing[@]}" >&2
    echo "layout and downloads: $REPO/docs/real_data.md" >&2
    exit 1
fi
log "all inputs present under $DATA_ROOT"
[ "${CHECK_ONLY:-0}" = 1 ] && exit 0

mkdir -p "$WORK"
cd "$WORK"
# the configs use relative paths: data/..., clip_embeddings/..., rp_*.pkl, resnet50_torchvision.pkl
ln -sfn "$DATA_ROOT" data
mkdir -p "$EMB_DIR"
ln -sfn "$EMB_DIR" clip_embeddings
log "work dir $WORK ($GPUS process(es))"

[ -e resnet50_torchvision.pkl ] || "$UNIDET" convert "$RESNET50_PTH" resnet50_torchvision.pkl --format torchvision-resnet
[ -e "$O365_CATINFO" ] || "$UNIDET" data catinfo --ann "$O365_ANN"
[ -e "$EMB_COCO" ] || "$UNIDET" embed --ann "$COCO_ANN" --encoder "clip:$CLIP_RN50" --out "$EMB_COCO"
[ -e "$EMB_O365" ] || "$UNIDET" embed --ann "$O365_ANN" --encoder "clip:$CLIP_RN50" --out "$EMB_O365"
[ -e "$EMB_LVIS" ] || "$UNIDET" embed --ann "$LVIS_ANN" --encoder "clip:$CLIP_RN50" --out "$EMB_LVIS"

train() {  # train CONFIG WORK_SUBDIR EPOCHS [extra args]
    local cfg=$1 dir=$2 epochs=$3; shift 3
    if [ -e "$dir/epoch_$epochs.pkl" ]; then log "$dir/epoch_$epochs.pkl exists: skip"; return; fi
    local resume=()
    [ -e "$dir/latest.pkl" ] && resume=(--resume)
    launch train "$cfg" --work-dir "$dir" --no-validate "${resume[@]}" "$@" --cfg-options runner.max_epochs="$epochs" \
        "${CFG_EXTRA[@]}"
}

# ---------------------------------------------------------------- 1. stage 1
log "stage 1: CLN on COCO + Objects365"
CFG_EXTRA=(data.train.0.ann_file="$COCO_ANN" data.train.0.img_prefix="$COCO_IMG/")
train "$CFG1" stage1 "$EPOCHS1"
CKPT1=stage1/epoch_$EPOCHS1.pkl

# ---------------------------------------------------------------- 2. proposals
if [ -e rp_train_0.pkl ] && [ -e rp_train_1.pkl ] && [ -e rp_val_ow.pkl ]; then
    log "proposals exist: skip"
else
    log "proposals for COCO, Objects365, LVIS v0.5 val"
    launch proposals "$CFG1" "$CKPT1" \
        --ann "$COCO_ANN" --img-dir "$COCO_IMG/" --out rp_train_0.pkl \
        --ann "$O365_ANN" --img-dir "$O365_IMG/" --out rp_train_1.pkl
    # LVIS v0.5 names its val images after COCO 2014 files: only LVISV05Dataset maps them to val2017/
    launch proposals "$CFG1" "$CKPT1" --cfg-options data.test.type=LVISV05Dataset \
        --ann "$LVIS_ANN" --img-dir "$LVIS_IMG/" --out rp_val_ow.pkl
fi

# ---------------------------------------------------------------- 3. stage 2
log "stage 2: partitioned CLIP RoI classifier"
# RegionCLIP has no box regression: an explicit partial load (the report lists what keeps its initialisation)
CFG_EXTRA=(load_from="$REGIONCLIP_PTH" allow_partial_load=True)
train "$CFG2" stage2 "$EPOCHS2"
CKPT2=stage2/epoch_$EPOCHS2.pkl

# ---------------------------------------------------------------- 4-6. LVIS
if [ ! -e raw_lvis_results.pkl ]; then
    log "LVIS v0.5 val, raw (no calibration)"
    launch test "$CFG_LVIS" "$CKPT2" --cfg-options model.roi_head.bbox_head.withcalibration=False \
        data.test.proposal_file=rp_val_ow.pkl --out raw_lvis_results.pkl --eval bbox | tee lvis_raw_eval.txt
fi
log "calibration prior"
"$UNIDET" calibrate raw_lvis_results.pkl --out lvis_prior.npy
log "LVIS v0.5 val, calibrated"
launch test "$CFG_LVIS" "$CKPT2" --cfg-options model.roi_head.bbox_head.resultfile=lvis_prior.npy \
    data.test.proposal_file=rp_val_ow.pkl \
    --out calibrated_lvis_results.pkl --eval bbox | tee lvis_calibrated_eval.txt
log "done: $WORK/lvis_raw_eval.txt, $WORK/lvis_calibrated_eval.txt"
