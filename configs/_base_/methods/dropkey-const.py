# DropKey with the same ratio in every layer.
method_name = 'dropkey-const'
dropkey = dict(method='dropkey', schedule='constant', drop_ratio=0.1)
