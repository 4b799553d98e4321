// The commands seed TorchSharp's global generator and the train command sets (and restores) the process exit code:
// run the test classes one after another.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
