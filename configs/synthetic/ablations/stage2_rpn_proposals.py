# Ablation of claim 1 (`unidet experiment --ablations`): the partitioned stage 2 of stage2_partitioned.py, trained
# and tested on the proposals of the classification-based stage 1 (ablations/stage1_rpn.py) instead of the CLN's.
# Everything else (world-CLIP initialisation, vocabularies, recipe, schedule, seed) is unchanged.
#   unidet proposals configs/synthetic/ablations/stage1_rpn.py work_dirs/ablations/stage1_rpn/latest.pkl \
#       --ann data/synthetic/train_a.json --img-dir data/synthetic/images/ --out data/synthetic/rp_rpn_train_a.pkl ...
#   unidet train configs/synthetic/ablations/stage2_rpn_proposals.py
_base_ = ['../stage2_partitioned.py']

data_root = 'data/synthetic/'
data = dict(train=dict(datasets=[
    dict(type='CocoDataset', ann_file=data_root + f'train_{k}.json', img_prefix=data_root + 'images/',
         pipeline={{_base_.train_pipeline}}, proposal_file=data_root + f'rp_rpn_train_{k}.pkl', dataset_id=i)
    for i, k in enumerate('abc')]))
