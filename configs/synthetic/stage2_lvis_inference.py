# Open-world inference on the synthetic "lvis-like" test set (all 320 classes, 40 never labelled in training):
# top-100 stage-1 proposals with their score, beta 0.3 fusion, optional calibration, soft-NMS, 300 dets.
#   unidet test configs/synthetic/stage2_lvis_inference.py work_dirs/stage2_partitioned/latest.pkl --eval bbox
# The stage-2 checkpoint was trained with the a/b/c vocabularies: every weight loads and zs_weights_0/1/2 are
# replaced by this model's own zs_weights (emb_lvis.npy), as the load report says.
# Calibration: run once with withcalibration=False and --out data/synthetic/raw_val_results.pkl, then
#   unidet calibrate data/synthetic/raw_val_results.pkl --out data/synthetic/prior.npy --smoothing 10
# and test with --cfg-options model.roi_head.bbox_head.withcalibration=True.
_base_ = ['./stage2_partitioned.py']

data_root = 'data/synthetic/'
model = dict(
    roi_head=dict(
        with_proposal_score=True,
        bbox_head=dict(
            _delete_=True,
            type='BBoxHeadCLIPInference',
            with_reg=False,  # as trained (stage2_partitioned.py): the boxes are the proposals'
            with_avg_pool=True,
            roi_feat_size=4,
            in_channels=512,  # = width * 32 of stage2_partitioned.py
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            with_cls=False,
            reg_class_agnostic=True,
            zeroshot_path=data_root + 'emb_lvis.npy',
            num_classes=320,
            loss_bbox=dict(type='L1Loss', loss_weight=1.0),
            beta=0.3,
            withcalibration=False,
            gamma=0.6,
            resultfile=data_root + 'prior.npy',
            calibration_smoothing=10.0)),
    test_cfg=dict(rcnn=dict(max_per_img=300)))

img_norm_cfg = dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579, 70.32316305],
                    to_rgb=True)  # CLIP normalisation (CLIP's 0-1 mean/std x 255), RGB
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadProposals', num_max_proposals=100, load_score=True),
    dict(type='MultiScaleFlipAug', img_scale=(576, 360), flip=False,
         transforms=[
             dict(type='Resize', keep_ratio=True),
             dict(type='RandomFlip'),
             dict(type='Normalize', **img_norm_cfg),
             dict(type='Pad', size_divisor=32),
             dict(type='ImageToTensor', keys=['img']),
             dict(type='ToTensor', keys=['proposals']),
             dict(type='Collect', keys=['img', 'proposals']),
         ])
]
data = dict(
    samples_per_gpu=1,
    val=dict(type='LVISV1Dataset', ann_file=data_root + 'val_lvis.json', img_prefix=data_root + 'images/',
             proposal_file=data_root + 'rp_val_lvis.pkl', pipeline=test_pipeline, test_mode=True),
    test=dict(type='LVISV1Dataset', ann_file=data_root + 'val_lvis.json', img_prefix=data_root + 'images/',
              proposal_file=data_root + 'rp_val_lvis.pkl', pipeline=test_pipeline, test_mode=True))
evaluation = dict(interval=1, metric='bbox')
load_from = None  # (stage2_partitioned.py's world-CLIP initialisation): the tested checkpoint is given
allow_partial_load = False
