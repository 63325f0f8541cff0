# UniDetector open-world inference on LVIS v0.5 val (official
# configs/inference/clip_decouple_faster_rcnn_r50_c4_1x_lvis_v0.5_2ndstage_withcalibration.py).
# Top-100 stage-1 proposals with their CLN score o; p = sigmoid(100 cos) over the 1230 LVIS classes;
# calibration p_c <- p_c w_c / mean(w), w_c = (cnum_c + calibration_smoothing)^-gamma; s = p^beta o^(1-beta);
# per-class gaussian soft-NMS, 300 detections.
#
# Calibration is transductive (official): the prior counts the raw detections of the UNcalibrated model on
# the test set itself. Files live in proposal_dir (the seed README's layout: `tools/generate_proposals.py
# --output-dir /root/autodl-tmp/rpl` writes rp_val_ow.pkl there; elsewhere: change proposal_dir or override
# data.test.proposal_file / model.roi_head.bbox_head.resultfile). Steps:
#   unidet test configs/lvis_inference_with_calibration.py CKPT \
#       --out /root/autodl-tmp/rpl/raw_decouple_oidcoco_lvis_rp_val.pkl --eval bbox \
#       --cfg-options model.roi_head.bbox_head.withcalibration=False
#   unidet calibrate RAW.pkl --out lvis_prior.npy --smoothing 10        (optional: a .npy prior as resultfile)
#   unidet test configs/lvis_inference_with_calibration.py CKPT --eval bbox
# resultfile takes the raw .pkl (counts + calibration_smoothing), a .npy prior (as is) or a cat-info .json
# (training image counts: a non-transductive prior).
# A checkpoint trained with other vocabularies loads fully; its zs_weights* buffers are replaced by the
# LVIS embeddings (the load report lists them).
_base_ = ['./_base_/clip_fast_rcnn_r50_c4.py']

proposal_dir = '/root/autodl-tmp/rpl/'

model = dict(
    roi_head=dict(
        with_proposal_score=True,
        bbox_head=dict(
            type='BBoxHeadCLIPInference',
            zeroshot_path='./clip_embeddings/lvis_v0.5_clip_a+cname_rn50_manyprompt.npy',
            num_classes=1230,
            beta=0.3,
            withcalibration=True,
            gamma=0.6,
            resultfile=proposal_dir + 'raw_decouple_oidcoco_lvis_rp_val.pkl',
            calibration_smoothing=10.0)),
    test_cfg=dict(rcnn=dict(max_per_img=300)))

dataset_type = 'LVISV05Dataset'
data_root = 'data/lvis_v0.5/'
img_norm_cfg = dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579, 70.32316305],
                    to_rgb=True)  # CLIP normalisation (CLIP's 0-1 mean/std x 255), RGB
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadProposals', num_max_proposals=100, load_score=True),
    dict(type='MultiScaleFlipAug', img_scale=(1333, 800), flip=False,
         transforms=[
             dict(type='Resize', keep_ratio=True),
             dict(type='RandomFlip'),
             dict(type='Normalize', **img_norm_cfg),
             dict(type='Pad', size_divisor=32),
             dict(type='ImageToTensor', keys=['img']),
             dict(type='ToTensor', keys=['proposals']),
             dict(type='ToDataContainer', fields=[dict(key='proposals', stack=False)]),
             dict(type='Collect', keys=['img', 'proposals']),
         ])
]
data = dict(
    samples_per_gpu=1,
    workers_per_gpu=2,
    val=dict(type=dataset_type, ann_file=data_root + 'annotations/lvis_v0.5_val.json',
             img_prefix=data_root + 'val2017/', proposal_file=proposal_dir + 'rp_val_ow.pkl', pipeline=test_pipeline),
    test=dict(type=dataset_type, ann_file=data_root + 'annotations/lvis_v0.5_val.json',
              img_prefix=data_root + 'val2017/', proposal_file=proposal_dir + 'rp_val_ow.pkl', pipeline=test_pipeline))
evaluation = dict(interval=1, metric='bbox')
