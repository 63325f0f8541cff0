# UniDetector stage 1 (CLN) on COCO + Objects365 (official
# configs/multidataset/clip_decouple_faster_rcnn_r50_c4_1x_objcoco_1ststage.py): class-agnostic training
# on COCO train (val35k in the official README) and the Objects365 v2 subset; 12 epochs, SGD 0.02,
# batch 16 (2 images x 8 GPUs). ImageNet ResNet-50 weights (torchvision), converted first:
#   unidet convert torchvision resnet50.pth --out resnet50_torchvision.pkl
#   unidet train configs/coco_objects365_1ststage_rpn.py
# Proposals for stage 2 (rp_train_0.pkl = COCO, rp_train_1.pkl = Objects365, rp_val_ow.pkl = LVIS):
#   unidet proposals configs/coco_objects365_1ststage_rpn.py work_dirs/coco_objects365_1ststage_rpn/latest.pkl \
#       --ann data/coco/annotations/instances_train2017.json --img-dir data/coco/train2017/ --out rp_train_0.pkl \
#       --ann data/objects365/annotations/zhiyuan_objv2_train.1@3.5.json --img-dir data/objects365/train/ \
#       --out rp_train_1.pkl
_base_ = ['./_base_/cln_faster_rcnn_r50_fpn.py']

model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='resnet50_torchvision.pkl')))

dataset_type = 'CocoDataset'
# ImageNet normalisation, RGB: the stage-1 model is trained with it. (The official LVIS stage-1 inference
# config uses CLIP mean/std, a copy-paste inconsistency, SPEC §3: we use ImageNet everywhere.)
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=[(1333, 400), (1333, 800)], multiscale_mode='range', keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(1333, 800), flip=False,
         transforms=[
             dict(type='Resize', keep_ratio=True),
             dict(type='RandomFlip'),
             dict(type='Normalize', **img_norm_cfg),
             dict(type='Pad', size_divisor=32),
             dict(type='ImageToTensor', keys=['img']),
             dict(type='Collect', keys=['img']),
         ])
]
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=2,
    train=[
        dict(type=dataset_type, ann_file='data/coco/annotations/instances_val35k.json',
             img_prefix='data/coco/train2014/', pipeline=train_pipeline, class_agnostic=True),
        dict(type=dataset_type, ann_file='data/objects365/annotations/zhiyuan_objv2_train.1@3.5.json',
             img_prefix='data/objects365/train/', pipeline=train_pipeline, class_agnostic=True),
    ],
    val=dict(type=dataset_type, ann_file='data/coco/annotations/instances_val2017.json',
             img_prefix='data/coco/val2017/', pipeline=test_pipeline, class_agnostic=True),
    test=dict(type=dataset_type, ann_file='data/coco/annotations/instances_val2017.json',
              img_prefix='data/coco/val2017/', pipeline=test_pipeline, class_agnostic=True))
evaluation = dict(interval=1, metric='proposal_fast')

optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=None)
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[8, 11])
runner = dict(type='EpochBasedRunner', max_epochs=12)
