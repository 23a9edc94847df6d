# Baseline: classic dropout on the softmax weights, rescaled by 1/(1-p), same ratio in every layer.
method_name = 'attndrop'
dropkey = dict(method='attn_drop', schedule='constant', drop_ratio=0.1)
