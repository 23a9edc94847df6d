_base_ = ['metro-r50.py', '3dpw.py']
