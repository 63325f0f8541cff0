# Stage 2 on the synthetic open world (CPU, minutes): partitioned CLIP RoI classifier trained on the three
# training sets with their own vocabularies (a: "coco-like", dataset_id 0; b: "objects365-like", 1;
# c: "openimages-like", 2), initialised from the world-CLIP (configs/synthetic/world_clip.py) as the official
# stage 2 is from RegionCLIP.
#   unidet data synth --out data/synthetic            # images, jsons, cat-info, emb_{a,b,c,lvis,web}.npy
#   (stage 1 on the same world writes data/synthetic/rp_train_{a,b,c}.pkl and rp_val_lvis.pkl;
#    the world-CLIP writes work_dirs/world_clip/world_clip.pkl: `unidet experiment --only world world_clip`)
#   unidet train configs/synthetic/stage2_partitioned.py
# A small CLIP ResNet (width 16 instead of 64: C4 = 256, C5 = 512 channels, attnpool 8 heads of 64; one
# block per stage instead of RN50's 3-4-6-3) so that it trains on a CPU. As the official model keeps its
# RegionCLIP statistics (norm_eval) and freezes the stem and layer1, this one keeps the world-CLIP's statistics
# and freezes the whole C4 backbone and layer4 (official: both train; here only the attention pool does). Trained
# on three small label spaces, a moving layer4 forgot much of how the world-CLIP named objects. Decided
# on the development world (seed 7, never a reported one), quick plan, the same stage 1 and world-CLIP: layer4
# and attention pool at a tenth of the lr (before) AP 17.0, test boxes named right (top-1) 38.2 %; layer4 frozen,
# attention pool at the full lr AP 19.8, 46.3 %; the attention pool at lr 0, layer4 at the full lr 10.9, 25.5 %.
# The backward pass stops at the attention pool. Text embeddings:
# the synthetic word-vector encoder (D = 1024). 32 sampled RoIs per image, half of them positive at most
# (official 512 with 1/4 positive on 1333x800 images): positives carry the classes.
_base_ = ['../_base_/clip_fast_rcnn_r50_c4.py']

data_root = 'data/synthetic/'
width = 16
layers = [1, 1, 1, 1]
model = dict(
    backbone=dict(width=width, layers=layers, frozen_stages=3, norm_eval=True),
    roi_head=dict(
        shared_head=dict(width=width, layers=layers, norm_eval=True, frozen=True),
        # RoIAlign 8x8 on C4 (official 14): layer4 -> 4x4 for the attention pool (spacial_dim 4 instead of 7)
        bbox_roi_extractor=dict(roi_layer=dict(output_size=8), out_channels=width * 16),
        # No box regression (official: with_reg=True): at these sizes the C4 regression (stride 16, 8x8 RoIAlign,
        # two epochs) made the CLN's boxes worse. On the development world (seed 7, not a reported one) the
        # detections' recall of ground truth at IoU 0.8 was 0.26 against 0.36 for the top-100 proposals, and AP
        # 10.2 with it vs 11.9 with the proposals' boxes; stage 1 already refines its boxes at FPN strides 4-32.
        bbox_head=dict(
            with_reg=False,
            roi_feat_size=4,
            type='BBoxHeadCLIPPartitioned',
            in_channels=width * 32,
            zeroshot_path=[data_root + 'emb_a.npy', data_root + 'emb_b.npy', data_root + 'emb_c.npy'],
            cat_freq_path=[data_root + 'train_a_cat_info.json', data_root + 'train_b_cat_info.json',
                           data_root + 'train_c_cat_info.json'],
            num_classes=160,            # = the largest training vocabulary (b) = the background label
            fed_loss_num_cat=50)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=32, pos_fraction=0.5))))
# The encoder that made emb_*.npy (`unidet data synth`), recorded in the checkpoints for `unidet detect`.
text_encoder = 'synthetic:dim=1024,seed=0'

img_norm_cfg = dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579, 70.32316305],
                    to_rgb=True)  # CLIP normalisation (CLIP's 0-1 mean/std x 255), RGB
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadProposals', num_max_proposals=300),
    dict(type='LoadAnnotations', with_bbox=True),
    # ~1.3-1.7x the world's 256-384 px images: shapes must survive the C4 stride of 16 (at native size the
    # classifier learns colours but not shapes); long sides of 640, 768 and 1024 gave the same AP
    # after two epochs (7.2-7.4 %), 640 in 105 instead of 124 s (768); 576 with the quick run's 16 RoIs: 7.2 %
    dict(type='Resize', img_scale=[(576, 288), (576, 432)], keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'proposals']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadProposals', num_max_proposals=None),
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
    samples_per_gpu=2,
    workers_per_gpu=0,
    train=dict(
        type='ConcatDataset',
        datasets=[
            dict(type='CocoDataset', ann_file=data_root + 'train_a.json', img_prefix=data_root + 'images/',
                 pipeline=train_pipeline, proposal_file=data_root + 'rp_train_a.pkl', dataset_id=0),
            dict(type='CocoDataset', ann_file=data_root + 'train_b.json', img_prefix=data_root + 'images/',
                 pipeline=train_pipeline, proposal_file=data_root + 'rp_train_b.pkl', dataset_id=1),
            dict(type='CocoDataset', ann_file=data_root + 'train_c.json', img_prefix=data_root + 'images/',
                 pipeline=train_pipeline, proposal_file=data_root + 'rp_train_c.pkl', dataset_id=2),
        ]),
    test=dict(type='CocoDataset', ann_file=data_root + 'train_a.json', img_prefix=data_root + 'images/',
              proposal_file=data_root + 'rp_train_a.pkl', pipeline=test_pipeline, test_mode=True))

# The world-CLIP's image tower (backbone, layer4, attention pool).
load_from = 'work_dirs/world_clip/world_clip.pkl'
allow_partial_load = True
# AdamW (the official SGD 0.002 fine-tunes CLIP weights; SGD from scratch reached about half the AP of AdamW in
# the same 300 iterations here), one lr for every trainable parameter as officially.
optimizer = dict(type='AdamW', lr=0.001, weight_decay=0.05)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=50, warmup_ratio=0.001, step=[8, 11])
runner = dict(type='EpochBasedRunner', max_epochs=12)
log_config = dict(interval=10)
