using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Hosting;

/// <summary>
/// What a hosted training run trains: the model and its data. The service creates one instance per run through
/// dependency injection (constructor parameters are resolved from the service provider, e.g.
/// <c>IOptions&lt;PeftTrainingOptions&gt;</c> for <see cref="PeftTrainingOptions.DataFile"/>), right after seeding the
/// global generator with <see cref="PeftTrainingOptions.Seed"/>, so a constructor that builds the model builds the
/// same model in every process: a resumed run depends on that (checkpoints hold only the trained parameters).
/// </summary>
public interface ITrainingJob : IDisposable
{
    /// <summary>The model, with its adapters declared (its trainable parameters are trained).</summary>
    nn.Module Model { get; }

    /// <summary>
    /// The generator the job draws its batches (sampling, shuffling) from, or null when batches are a pure function
    /// of the batch index. Its state is saved in every checkpoint and restored on resume.
    /// </summary>
    Generator? DataSampler { get; }

    /// <summary>Tokens (or examples) in one batch, for the tokens/s figure in logs and metrics.</summary>
    long TokensPerStep { get; }

    /// <summary>
    /// Reads batch <paramref name="batchIndex"/> (0-based; it equals the number of batches delivered before, which a
    /// resumed run continues from) and returns its scalar loss. Runs inside the trainer's dispose scope.
    /// </summary>
    /// <param name="batchIndex">The batch to read: the data position.</param>
    /// <param name="device">The device the model is on; put the batch there.</param>
    /// <returns>The scalar loss.</returns>
    Tensor ComputeLoss(long batchIndex, Device device);

    /// <summary>
    /// Hooks the trainer runs at each step (<see cref="TrainingOptions.Callbacks"/>), for example a rank schedule.
    /// Read once, when the trainer is created. Default: none.
    /// </summary>
    IReadOnlyList<ITrainingCallback> Callbacks => Array.Empty<ITrainingCallback>();

    /// <summary>
    /// Terms added to <see cref="ComputeLoss"/>'s loss at each step (<see cref="TrainingOptions.Regularizers"/>). Read
    /// once, when the trainer is created. Default: none.
    /// </summary>
    IReadOnlyList<Func<Tensor>> Regularizers => Array.Empty<Func<Tensor>>();
}
