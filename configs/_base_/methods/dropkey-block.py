# Structured DropKey: square 3x3 windows of the key grid, decreasing schedule.
method_name = 'dropkey-block'
dropkey = dict(method='dropkey_block', schedule='linear_decrease', drop_ratio=0.1, block_size=3)
