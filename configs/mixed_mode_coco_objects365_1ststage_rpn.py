# The seed README's stage-1 config name. Its "mixed mode" ran MMDetection (PyTorch) base components next to
# Jittor heads; here mixed mode = pure Jittor: this is configs/coco_objects365_1ststage_rpn.py (UniDetector
# stage 1, the class-agnostic CLN on COCO + Objects365), unchanged, plus the datasets that
#   python tools/generate_proposals.py --config configs/mixed_mode_coco_objects365_1ststage_rpn.py \
#       --checkpoint ./stage1_rpn/latest.pkl --output-dir DIR --datasets coco objects365 lvis
# writes proposals for. Each name points at the data entry of the config that reads the proposals, which gives
# the annotation file, the image folder and the proposal file name (written inside DIR): coco -> rp_train_0.pkl
# and objects365 -> rp_train_1.pkl (stage 2), lvis -> rp_val_ow.pkl (LVIS inference). Config paths are relative
# to this file. Jittor runtime settings (the seed's jittor_config=dict(use_cuda=..., amp_level=...,
# compile_mode=...)) are optional: see unidetector/engine/jittor_config.py.
_base_ = ['./coco_objects365_1ststage_rpn.py']

proposal_datasets = dict(
    coco=dict(config='mixed_mode_coco_objects365_2ndstage_roi.py', data='train.datasets.0'),
    objects365=dict(config='mixed_mode_coco_objects365_2ndstage_roi.py', data='train.datasets.1'),
    lvis=dict(config='lvis_inference_with_calibration.py', data='test'))
