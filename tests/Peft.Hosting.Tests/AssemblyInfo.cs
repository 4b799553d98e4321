// Training tests seed and draw from TorchSharp's process-wide generator: they run one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
