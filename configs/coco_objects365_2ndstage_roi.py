# UniDetector stage 2, COCO + Objects365 (official
# configs/multidataset/clip_decouple_faster_rcnn_r50_c4_1x_objcoco_2ndstage.py, its missing commas fixed).
# Partitioned head: one frozen CLIP text-embedding buffer per dataset; an image's loss uses only its own
# dataset's logits (dataset_id 0 = COCO, 1 = Objects365). Proposals: stage-1 pickles rp_train_{0,1}.pkl.
# Initialise with RegionCLIP:  unidet train configs/coco_objects365_2ndstage_roi.py \
#     --cfg-options load_from=regionclip_pretrained-cc_rn50_mmdet.pth allow_partial_load=True
_base_ = ['./_base_/clip_fast_rcnn_r50_c4.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            type='BBoxHeadCLIPPartitioned',
            zeroshot_path=['./clip_embeddings/coco_clip_a+cname_rn50_manyprompt.npy',
                           './clip_embeddings/objects365_clip_a+cname_rn50_manyprompt.npy'],
            # zero-image classes are never sampled as negatives (O365 subset); COCO: none
            cat_freq_path=[None, 'data/objects365/annotations/zhiyuan_objv2_train.1@3.5_cat_info.json'],
            num_classes=365,            # = max vocabulary size = the background label
            fed_loss_num_cat=50)))

dataset_type = 'CocoDataset'
img_norm_cfg = dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579, 70.32316305],
                    to_rgb=True)  # CLIP normalisation (CLIP's 0-1 mean/std x 255), RGB
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadProposals', num_max_proposals=2000),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=[(1333, 400), (1333, 800)], keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'proposals']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadProposals', num_max_proposals=None),
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
    samples_per_gpu=2,
    workers_per_gpu=2,
    train=dict(
        type='ConcatDataset',
        datasets=[
            dict(type=dataset_type,
                 ann_file='data/coco/annotations/instances_valminusminival2014.json',
                 img_prefix='data/coco/images/val2014',
                 pipeline=train_pipeline,
                 proposal_file='rp_train_0.pkl',
                 dataset_id=0),
            # Objects365 v2 subset; classes come from the json (sorted by id = embedding row order)
            dict(type='Objects365Dataset',
                 ann_file='data/objects365/annotations/zhiyuan_objv2_train.1@3.5.json',
                 img_prefix='data/objects365/train/',
                 pipeline=train_pipeline,
                 proposal_file='rp_train_1.pkl',
                 dataset_id=1),
        ]),
    val=dict(type=dataset_type, ann_file='data/coco/annotations/instances_val2017.json',
             img_prefix='data/coco/val2017/', proposal_file='rp_val.pkl', pipeline=test_pipeline),
    test=dict(type=dataset_type, ann_file='data/coco/annotations/instances_val2017.json',
              img_prefix='data/coco/val2017/', proposal_file='rp_val.pkl', pipeline=test_pipeline))
evaluation = dict(interval=1, metric='bbox')

# SPEC 4.6: lr 0.02 x lr_mult 0.1 on both sub-modules = 0.002 effective for every parameter
optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001,
                 paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0),
                                                 'roi_head': dict(lr_mult=0.1, decay_mult=1.0)}))
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[8, 11])
runner = dict(type='EpochBasedRunner', max_epochs=12)
