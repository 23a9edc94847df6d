_base_ = ['metro-r50.py', 'h36m.py']
