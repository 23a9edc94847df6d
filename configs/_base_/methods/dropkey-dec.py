# DropKey, the paper's choice: the ratio falls linearly from drop_ratio (first layer) to 0 (last).
method_name = 'dropkey-dec'
dropkey = dict(method='dropkey', schedule='linear_decrease', drop_ratio=0.1)
