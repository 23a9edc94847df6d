# The `dropkey-cross` variant (tasks/common/variants.py); override a field with e.g.
# --cfg-options dropkey.drop_ratio=0.2
dropkey = dict(variant='dropkey-cross')
