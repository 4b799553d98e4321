using static TorchSharp.torch;

namespace Peft.Training;

/// <summary>
/// An <see cref="ITrainingCallback"/> whose state changes during training (a growing parameter mask, a generator it
/// draws from) and must be part of a training checkpoint so that a resumed run continues as the uninterrupted one.
/// <see cref="Checkpoints.CheckpointStore"/> writes the state of every such callback in
/// <see cref="TrainingOptions.Callbacks"/> to <c>callbacks.safetensors</c> as <c>{StateName}/{key}</c> and restores it
/// on load, refusing a checkpoint that lacks a callback's state (or holds one this run has no callback for).
/// </summary>
public interface ICheckpointedCallback : ITrainingCallback
{
    /// <summary>A name unique among the run's callbacks (the prefix of its tensors in the checkpoint).</summary>
    string StateName { get; }

    /// <summary>The callback's state as named tensors (copies or live tensors; the store only reads them).</summary>
    /// <returns>The tensors, keys without '/'.</returns>
    IReadOnlyList<KeyValuePair<string, Tensor>> CheckpointState();

    /// <summary>
    /// Restores the state <see cref="CheckpointState"/> returned. Called after the parameters and the optimizer state
    /// were restored. Validate everything before changing anything; throw <see cref="ArgumentException"/> with the
    /// problem (the store wraps it in a <see cref="Checkpoints.CheckpointException"/> naming the file).
    /// </summary>
    /// <param name="state">The saved tensors, by key.</param>
    void RestoreCheckpointState(IReadOnlyDictionary<string, Tensor> state);
}
