# Ablation of claim 2 (`unidet experiment --ablations`): stage 2 trained on ONE unified label space, a ∪ b ∪ c
# merged into a single vocabulary (train_unified.json: the images and labelled boxes of a, b and c; categories = every
# class labelled in some set), instead of one partitioned head per set. An object of a class outside its own
# set's label space is unlabelled, so a region on it is background for *every* class of the merged vocabulary
# (the partitioned heads ask it about its own set's classes only). Same model, world-CLIP initialisation, recipe,
# images, iterations and seed as stage2_partitioned.py; the ablation plan writes the merged files
# (train_unified.json, train_unified_cat_info.json, emb_unified.npy: rows of emb_lvis.npy; rp_train_unified.pkl:
# the CLN proposals of a, b and c in the merged image order) and sets num_classes from world.json.
#   unidet train configs/synthetic/ablations/stage2_unified.py
_base_ = ['../stage2_partitioned.py']

data_root = 'data/synthetic/'
model = dict(roi_head=dict(bbox_head=dict(
    zeroshot_path=[data_root + 'emb_unified.npy'],
    cat_freq_path=[data_root + 'train_unified_cat_info.json'],
    num_classes=280)))      # = the classes labelled in some training set (world.json vocabularies "seen")
data = dict(train=dict(datasets=[
    dict(type='CocoDataset', ann_file=data_root + 'train_unified.json', img_prefix=data_root + 'images/',
         pipeline={{_base_.train_pipeline}}, proposal_file=data_root + 'rp_train_unified.pkl', dataset_id=0)]))
