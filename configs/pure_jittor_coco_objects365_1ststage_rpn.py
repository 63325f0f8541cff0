# The seed README's "pure Jittor (experimental)" stage-1 config name. Everything in this project is pure
# Jittor, so it is the same model, data and schedule as configs/mixed_mode_coco_objects365_1ststage_rpn.py
# (= configs/coco_objects365_1ststage_rpn.py + the proposal datasets of tools/generate_proposals.py).
_base_ = ['./mixed_mode_coco_objects365_1ststage_rpn.py']
