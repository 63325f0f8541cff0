# Ablation of claim 1 (`unidet experiment --ablations`): classification-based proposals instead of the CLN.
# Same data (a + b + c, objects outside a set's vocabulary unlabelled, hence background), backbone, FPN, anchors,
# schedule and seed as stage1_cln.py; what changes is how a proposal is scored:
#   * the RPN is mmdet's RPNHead: sigmoid objectness *classified* against anchors (IoU >= 0.7 positive, < 0.3
#     negative: every unlabelled object is a negative), DeltaXYWH regression with L1 (CLN: OLN's centerness
#     objectness regressed from positives only, TBLR boxes with an IoU loss);
#   * the RoI head keeps the fg/bg classifier but drops the localisation-quality branch: score = fg probability
#     (alpha = 1, the IoU-score loss weighted 0; CLN: fg^0.3 * (centerness * IoU)^0.7).
# This is Faster R-CNN's class-agnostic proposal stage, the "classification" baseline of OLN and UniDetector.
#   unidet train configs/synthetic/ablations/stage1_rpn.py
_base_ = ['../stage1_cln.py']

model = dict(
    rpn_head=dict(
        _delete_=True,
        type='RPNHead',
        in_channels=64,
        feat_channels=64,
        anchor_generator=dict(type='AnchorGenerator', scales=[4], ratios=[1.0], strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=[1., 1., 1., 1.]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(bbox_head=dict(alpha=1.0, loss_bbox_score=dict(type='L1Loss', loss_weight=0.0))),
    train_cfg=dict(
        rpn=dict(
            _delete_=True,
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=0,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(_delete_=True, nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                          min_bbox_size=0)),
    # up to 300 boxes per FPN level before NMS, as the CLN's nms_pre; at most 1000 to the RoI head
    test_cfg=dict(rpn=dict(_delete_=True, nms_pre=300, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                           min_bbox_size=0)))
