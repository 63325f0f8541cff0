# Open-world inference on LVIS v1 val (no official config or embedding exists): 1203 classes.
# Embeddings:  unidet embed --ann data/lvis_v1/annotations/lvis_v1_val.json --encoder clip:RN50.pt \
#                  --out clip_embeddings/lvis_v1_clip_a+cname_rn50_manyprompt.npy
# Proposals: stage-1 test on lvis_v1_val.json -> rp_val_ow_v1.pkl. Caution: LVIS v1 val contains COCO
# train2017 images, which may overlap the COCO training images (SPEC 5).
_base_ = ['./lvis_inference_with_calibration.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            zeroshot_path='./clip_embeddings/lvis_v1_clip_a+cname_rn50_manyprompt.npy',
            num_classes=1203,
            resultfile='raw_lvis_v1_results.pkl')))

data_root = 'data/lvis_v1/'
data = dict(
    val=dict(type='LVISV1Dataset', ann_file=data_root + 'annotations/lvis_v1_val.json', img_prefix=data_root,
             proposal_file='rp_val_ow_v1.pkl'),
    test=dict(type='LVISV1Dataset', ann_file=data_root + 'annotations/lvis_v1_val.json', img_prefix=data_root,
              proposal_file='rp_val_ow_v1.pkl'))
