// TorchSharp's generator is global: one test class at a time, so seeded models are the same models.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
