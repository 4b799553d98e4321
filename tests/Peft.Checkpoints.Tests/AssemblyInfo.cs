// Models are built after torch.manual_seed: tests must not interleave on TorchSharp's global generator.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
