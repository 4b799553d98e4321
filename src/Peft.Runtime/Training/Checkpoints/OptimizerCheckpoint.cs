using System.Globalization;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Training.Checkpoints;

/// <summary>
/// The optimizer part of a checkpoint, for any <see cref="PeftOptimizer"/>: <c>optimizer.safetensors</c> holds each
/// state tensor as <c>{parameter name}/{state name}</c> (parameter-major, in <see cref="PeftOptimizer.StateNames"/>
/// order) and each integer scalar as the metadata entry <c>{parameter name}/{scalar name}</c>; the manifest's
/// <c>optimizer</c> names <see cref="PeftOptimizer.Kind"/>. For AdamW this is exactly the layout written before
/// optimizers were pluggable (<c>exp_avg</c>, <c>exp_avg_sq</c>, <c>step</c>), and a manifest without <c>optimizer</c>
/// means AdamW, so those checkpoints resume unchanged.
/// </summary>
internal static class OptimizerCheckpoint
{
    /// <summary>The optimizer kind of a checkpoint whose manifest does not name one (written before kinds were recorded).</summary>
    internal const string LegacyKind = AdamWOptimizer.KindName;

    /// <summary>The kind a manifest records, <see cref="LegacyKind"/> when it records none.</summary>
    internal static string KindOf(CheckpointManifest manifest) => manifest.Optimizer ?? LegacyKind;

    /// <summary>The state tensors by file key and the scalars as metadata, ready to write; the tensors are the live ones.</summary>
    internal static (List<KeyValuePair<string, Tensor>> Tensors, Dictionary<string, string> Metadata) Collect(
        PeftOptimizer optimizer, IReadOnlyList<string> names, string path)
    {
        CheckShape(optimizer, names.Count, path);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < names.Count; i++)
        {
            foreach (string state in optimizer.StateNames)
            {
                var tensor = optimizer.GetState(i, state)
                    ?? throw new CheckpointException(path, $"the {optimizer.Kind} optimizer has no {state} tensor for {names[i]}.");
                tensors.Add(new(names[i] + "/" + state, tensor));
            }

            foreach (string scalar in optimizer.ScalarStateNames)
            {
                metadata[names[i] + "/" + scalar] = optimizer.GetScalarState(i, scalar).ToString(CultureInfo.InvariantCulture);
            }
        }

        return (tensors, metadata);
    }

    /// <summary>Throws when a state tensor holds NaN or infinite values (a checkpoint is then not written).</summary>
    internal static void EnsureFinite(PeftOptimizer optimizer, IReadOnlyList<string> names, int step, string path)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        for (int i = 0; i < names.Count; i++)
        {
            foreach (string state in optimizer.StateNames)
            {
                var tensor = optimizer.GetState(i, state);
                if (tensor.is_floating_point() && !torch.isfinite(tensor).all().item<bool>())
                {
                    throw new CheckpointException(path, $"refusing to write a checkpoint: the {optimizer.Kind} {state} of {names[i]} hold NaN or infinite values at step {step}. The previous checkpoints are kept.");
                }
            }
        }
    }

    /// <summary>Refuses a checkpoint written by another kind of optimizer than <paramref name="optimizer"/>.</summary>
    internal static void EnsureKind(CheckpointManifest manifest, PeftOptimizer optimizer, string dir)
    {
        string saved = KindOf(manifest);
        if (!string.Equals(saved, optimizer.Kind, StringComparison.Ordinal))
        {
            throw new CheckpointException(dir,
                $"it was written with the {saved} optimizer{(manifest.Optimizer is null ? " (a checkpoint that names no optimizer is AdamW's)" : string.Empty)}; "
                + $"this run uses {optimizer.Kind}. The optimizer state cannot carry over: resume with {saved} (TrainingOptions.Optimizer), or start a new run in another directory.");
        }
    }

    /// <summary>
    /// Reads every state tensor and scalar from <paramref name="reader"/>, checked against the live state (shape, dtype,
    /// finite values), without changing anything.
    /// </summary>
    internal static Restore Read(SafetensorsReader reader, PeftOptimizer optimizer, IReadOnlyList<string> names, string file,
        Func<SafetensorsReader, string, Tensor, string, Tensor> readChecked)
    {
        CheckShape(optimizer, names.Count, file);
        var tensors = new List<(int Index, string State, Tensor Value)>();
        var scalars = new List<(int Index, string Scalar, long Value)>();
        for (int i = 0; i < names.Count; i++)
        {
            foreach (string state in optimizer.StateNames)
            {
                tensors.Add((i, state, readChecked(reader, names[i] + "/" + state, optimizer.GetState(i, state), file)));
            }

            foreach (string scalar in optimizer.ScalarStateNames)
            {
                string key = names[i] + "/" + scalar;
                if (!reader.Metadata.TryGetValue(key, out var text)
                    || !long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value))
                {
                    throw new CheckpointException(file, $"the metadata has no valid {scalar} for {names[i]}.");
                }

                scalars.Add((i, scalar, value));
            }
        }

        return new Restore(optimizer, tensors, scalars);
    }

    private static void CheckShape(PeftOptimizer optimizer, int parameterCount, string path)
    {
        if (optimizer.Parameters.Count != parameterCount)
        {
            throw new CheckpointException(path, $"the {optimizer.Kind} optimizer holds {optimizer.Parameters.Count} parameters; the trainer trains {parameterCount}.");
        }
    }

    /// <summary>Validated optimizer state, applied by <see cref="Apply"/> once everything else is validated too.</summary>
    internal sealed class Restore(PeftOptimizer optimizer, List<(int Index, string State, Tensor Value)> tensors, List<(int Index, string Scalar, long Value)> scalars)
    {
        /// <summary>Copies the state into the optimizer.</summary>
        public void Apply()
        {
            foreach (var (index, state, value) in tensors)
            {
                optimizer.LoadState(index, state, value);
            }

            foreach (var (index, scalar, value) in scalars)
            {
                optimizer.SetScalarState(index, scalar, value);
            }
        }
    }
}
