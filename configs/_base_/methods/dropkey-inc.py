# DropKey with the ratio rising linearly from 0 (first layer) to drop_ratio (last).
method_name = 'dropkey-inc'
dropkey = dict(method='dropkey', schedule='linear_increase', drop_ratio=0.1)
