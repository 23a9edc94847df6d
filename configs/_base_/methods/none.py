# Baseline: no regularisation of the attention.
method_name = 'none'
dropkey = dict(method='none', schedule='constant', drop_ratio=0.0)
