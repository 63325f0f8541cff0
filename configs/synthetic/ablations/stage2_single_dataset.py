# Ablation of claim 2 (`unidet experiment --ablations`): stage 2 trained on ONE dataset only, b
# ("objects365-like", the largest label space), instead of the partitioned heads over a, b and c. Same model,
# world-CLIP initialisation, recipe and seed as stage2_partitioned.py. The ablation plan gives it the same number
# of iterations as the partitioned run (more epochs over fewer images) and takes the set, its vocabulary size and
# its files from world.json (the largest training set); the values below are those of the current world.
#   unidet train configs/synthetic/ablations/stage2_single_dataset.py
_base_ = ['../stage2_partitioned.py']

data_root = 'data/synthetic/'
model = dict(roi_head=dict(bbox_head=dict(
    zeroshot_path=[data_root + 'emb_b.npy'],
    cat_freq_path=[data_root + 'train_b_cat_info.json'],
    num_classes=160)))      # = the rows of emb_b.npy (the background label)
data = dict(train=dict(datasets=[
    dict(type='CocoDataset', ann_file=data_root + 'train_b.json', img_prefix=data_root + 'images/',
         pipeline={{_base_.train_pipeline}}, proposal_file=data_root + 'rp_train_b.pkl', dataset_id=0)]))
