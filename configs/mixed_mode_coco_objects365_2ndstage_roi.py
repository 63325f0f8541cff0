# The seed README's stage-2 config name. Its "mixed mode" ran MMDetection (PyTorch) base components next to
# Jittor heads; here mixed mode = pure Jittor: this is configs/coco_objects365_2ndstage_roi.py (UniDetector
# stage 2, the partitioned CLIP RoI classifier on COCO + Objects365) reading the stage-1 proposals from the
# folder the seed README writes them to:
#   python tools/generate_proposals.py --config configs/mixed_mode_coco_objects365_1ststage_rpn.py \
#       --checkpoint ./stage1_rpn/latest.pkl --output-dir /root/autodl-tmp/rpl --datasets coco objects365 lvis
# (another folder: change proposal_dir below, or --cfg-options data.train.datasets.0.proposal_file=... and .1).
# The seed's proposals cover the training sets and LVIS only, so there is no per-epoch COCO validation here
# (data.val of the base config needs rp_val.pkl); the LVIS test of the seed README is the evaluation.
# mmengine replaces lists whole, so the two training entries of the base config are restated with
# proposal_dir; everything else is inherited. RegionCLIP initialisation: --cfg-options load_from=...
_base_ = ['./coco_objects365_2ndstage_roi.py']

proposal_dir = '/root/autodl-tmp/rpl/'
data = dict(
    train=dict(
        datasets=[
            dict(type='CocoDataset',
                 ann_file='data/coco/annotations/instances_valminusminival2014.json',
                 img_prefix='data/coco/images/val2014',
                 pipeline={{_base_.train_pipeline}},
                 proposal_file=proposal_dir + 'rp_train_0.pkl',
                 dataset_id=0),
            dict(type='Objects365Dataset',
                 ann_file='data/objects365/annotations/zhiyuan_objv2_train.1@3.5.json',
                 img_prefix='data/objects365/train/',
                 pipeline={{_base_.train_pipeline}},
                 proposal_file=proposal_dir + 'rp_train_1.pkl',
                 dataset_id=1),
        ]),
    val=None)
