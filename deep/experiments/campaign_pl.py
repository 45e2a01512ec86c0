def pl_config(args, out):
    raise NotImplementedError
