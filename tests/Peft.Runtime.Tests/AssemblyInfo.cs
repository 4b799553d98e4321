// TorchSharp's random generator is global: tests that seed it (manual_seed, Seeding.SetSeed) and build models from it
// must not interleave with other test classes, or their "identical weights" are not.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
