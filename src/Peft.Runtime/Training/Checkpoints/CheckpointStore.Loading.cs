using System.Globalization;
using System.Text.Json;
using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training.Checkpoints;

/// <summary>Reading a checkpoint back: the manifest, then every tensor checked against the model and the trainer before anything is restored.</summary>
public sealed partial class CheckpointStore
{
    /// <summary>Reads and validates a checkpoint's manifest and files (sizes and SHA-256) without loading tensors.</summary>
    /// <param name="checkpointDirectory">A <c>step-N</c> directory.</param>
    /// <returns>The manifest.</returns>
    /// <exception cref="CheckpointException">The directory, the manifest or a file is missing, unreadable or does not match the manifest.</exception>
    public static CheckpointManifest ReadManifest(string checkpointDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpointDirectory);
        return CheckpointValidation.ReadManifest(Path.GetFullPath(checkpointDirectory));
    }

    /// <summary>
    /// Restores a checkpoint into <paramref name="model"/>'s trained parameters, <paramref name="trainer"/>'s optimizer
    /// state (its kind must be the one recorded in the manifest) and step counters, the global CPU generator and <paramref name="dataSampler"/>. Everything is validated
    /// before anything is changed.
    /// </summary>
    /// <param name="checkpointDirectory">A <c>step-N</c> directory.</param>
    /// <param name="model">The model, built the same way as in the run that wrote the checkpoint.</param>
    /// <param name="trainer">A new trainer over the model's parameters with the same <see cref="TrainingOptions.TotalSteps"/>.</param>
    /// <param name="dataSampler">The data source's generator; required when the checkpoint holds a sampler state.</param>
    /// <returns>The checkpoint that was loaded.</returns>
    /// <exception cref="CheckpointException">The checkpoint is missing, corrupt or does not fit the model or trainer;
    /// the message names the path and the problem, and nothing was changed.</exception>
    public static CheckpointInfo Load(string checkpointDirectory, nn.Module model, AdapterTrainer trainer, Generator? dataSampler = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(trainer);
        string dir = Path.GetFullPath(checkpointDirectory);
        var manifest = ReadManifest(dir);
        if (manifest.TotalSteps != trainer.Options.TotalSteps)
        {
            throw new CheckpointException(dir, $"it was written by a run with TotalSteps = {manifest.TotalSteps}; this run has {trainer.Options.TotalSteps}. The learning-rate schedule would differ; use the same TotalSteps or a new output directory.");
        }

        if (manifest.Step > trainer.Options.TotalSteps)
        {
            throw new CheckpointException(dir, $"its step {manifest.Step} is beyond TotalSteps {trainer.Options.TotalSteps}.");
        }

        var names = ParameterNames(model, trainer, dir);
        if (!names.SequenceEqual(manifest.Parameters, StringComparer.Ordinal))
        {
            var missing = names.Except(manifest.Parameters, StringComparer.Ordinal).ToList();
            var extra = manifest.Parameters.Except(names, StringComparer.Ordinal).ToList();
            throw new CheckpointException(dir, "its trained parameters do not match the model's"
                + (missing.Count > 0 ? "; not in the checkpoint: " + string.Join(", ", missing) : string.Empty)
                + (extra.Count > 0 ? "; not in the model: " + string.Join(", ", extra) : string.Empty)
                + (missing.Count == 0 && extra.Count == 0 ? "; same names in a different order" : string.Empty)
                + ". Was the model (its adapters or [Trainable] members) changed?");
        }

        if (manifest.HasSamplerState && dataSampler is null)
        {
            throw new CheckpointException(dir, "it holds a data sampler state but no sampler generator was given to restore it into.");
        }

        if (!manifest.HasSamplerState && dataSampler is not null)
        {
            throw new CheckpointException(dir, "a data sampler generator was given but the checkpoint holds no sampler state.");
        }

        CheckpointValidation.EnsureOptimizerSteps(Path.Combine(dir, OptimizerFileName), manifest.Step);
        OptimizerCheckpoint.EnsureKind(manifest, trainer.Optimizer, dir);
        using var scope = torch.NewDisposeScope();
        var callbackStates = CallbackCheckpoint.Read(dir, manifest, CallbackCheckpoint.Of(trainer.Options, dir));
        var parameterValues = new List<Tensor>();
        OptimizerCheckpoint.Restore optimizerState;
        Tensor cpuState;
        Tensor? samplerState = null;
        string file = Path.Combine(dir, ParametersFileName);
        try
        {
            using (var reader = SafetensorsFile.Open(file))
            {
                for (int i = 0; i < names.Count; i++)
                {
                    parameterValues.Add(ReadChecked(reader, names[i], trainer.Parameters[i], file));
                }
            }

            file = Path.Combine(dir, OptimizerFileName);
            using (var reader = SafetensorsFile.Open(file))
            {
                optimizerState = OptimizerCheckpoint.Read(reader, trainer.Optimizer, names, file, ReadChecked);
            }

            file = Path.Combine(dir, RandomStateFileName);
            using (var reader = SafetensorsFile.Open(file))
            {
                if (!reader.Contains(CpuGeneratorKey))
                {
                    throw new CheckpointException(file, $"the tensor {CpuGeneratorKey} (global generator state) is missing.");
                }

                cpuState = reader.ReadTensor(CpuGeneratorKey);
                if (manifest.HasSamplerState)
                {
                    if (!reader.Contains(SamplerKey))
                    {
                        throw new CheckpointException(file, $"the tensor {SamplerKey} (data sampler state) is missing.");
                    }

                    samplerState = reader.ReadTensor(SamplerKey);
                }
            }
        }
        catch (Exception ex) when (ex is SafetensorsFormatException or IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(file, $"the file cannot be read: {ex.Message}", ex);
        }

        // libtorch aborts the process on a state it rejects, so the states are checked here, and restored before the
        // parameters are touched.
        CheckpointValidation.EnsureGeneratorState(file, CpuGeneratorKey, cpuState);
        if (samplerState is not null)
        {
            CheckpointValidation.EnsureGeneratorState(file, SamplerKey, samplerState);
        }

        torch.set_rng_state(cpuState);
        if (samplerState is not null)
        {
            dataSampler!.set_state(samplerState);
        }

        using (torch.no_grad())
        {
            for (int i = 0; i < names.Count; i++)
            {
                trainer.Parameters[i].copy_(parameterValues[i]);
            }
        }

        optimizerState.Apply();
        CallbackCheckpoint.Restore(dir, callbackStates);
        trainer.RestoreCounters(manifest.Step, manifest.SkippedSteps);
        return new CheckpointInfo(dir, manifest);
    }

    private static Tensor ReadChecked(SafetensorsReader reader, string key, Tensor target, string file)
    {
        if (!reader.Contains(key))
        {
            throw new CheckpointException(file, $"the tensor {key} is missing.");
        }

        var info = reader.GetInfo(key);
        if (!info.Shape.SequenceEqual(target.shape) || info.DType.ToScalarType() != target.dtype)
        {
            throw new CheckpointException(file, $"the tensor {key} is {info.DType} [{string.Join(", ", info.Shape)}]; the model has {target.dtype} [{string.Join(", ", target.shape)}].");
        }

        var value = reader.ReadTensor(key).to(target.device);
        if (!torch.isfinite(value).all().item<bool>())
        {
            throw new CheckpointException(file, $"the tensor {key} holds NaN or infinite values; refusing to load it.");
        }

        return value;
    }
}
