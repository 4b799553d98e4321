using System.Globalization;
using System.Text.Json;
using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training.Checkpoints;

/// <summary>A checkpoint directory and its manifest.</summary>
/// <param name="Path">The checkpoint directory (<c>…/step-00000120</c>).</param>
/// <param name="Manifest">Its <c>manifest.json</c>.</param>
public sealed record CheckpointInfo(string Path, CheckpointManifest Manifest);

/// <summary>
/// Writes and reads training checkpoints: one directory per step under <see cref="Root"/>
/// (<c>step-00000120/</c>) holding the trained parameters, the optimizer state (whatever the trainer's
/// <see cref="PeftOptimizer"/> exposes), the random-number generator states and a <c>manifest.json</c> with the step
/// counters, the optimizer kind and the data position. Enough to resume a run so that it continues
/// exactly as the uninterrupted run would have (bit for bit on CPU).
/// </summary>
/// <remarks>
/// <para><b>Atomicity.</b> A checkpoint is written into a hidden temporary directory (<c>.tmp-step-…</c>) in
/// <see cref="Root"/>; every file is flushed to disk, the manifest last, then the directory itself, and only then is
/// it renamed to <c>step-NNNNNNNN</c> and <see cref="Root"/> flushed. A crash at any point leaves either no new
/// checkpoint (the temporary directory is ignored and removed by the next <see cref="Save"/>) or a complete one; the
/// previous checkpoints are never touched before the new one is in place. Only then are checkpoints beyond
/// <see cref="KeepLast"/> deleted, oldest first.</para>
/// <para><b>Validation.</b> The manifest records every file's size and SHA-256; <see cref="Load"/> checks them, the
/// parameter names and shapes and the schedule length before anything is copied, and every error is a
/// <see cref="CheckpointException"/> naming the path. A checkpoint is never written when a parameter or an optimizer
/// moment is NaN or infinite.</para>
/// <para>Frozen (base) weights are not part of a checkpoint: the process that resumes must build the model the same
/// way (same seed or same base weights file).</para>
/// </remarks>
public sealed partial class CheckpointStore
{
    /// <summary>The manifest's file name.</summary>
    public const string ManifestFileName = "manifest.json";

    /// <summary>The trained parameters, by state-dict name.</summary>
    public const string ParametersFileName = "trainable.safetensors";

    /// <summary>
    /// The optimizer state: tensors <c>{name}/{state}</c> (AdamW: <c>exp_avg</c>, <c>exp_avg_sq</c>; SGD:
    /// <c>momentum_buffer</c>) and per-parameter scalars <c>{name}/{scalar}</c> in the metadata (AdamW: <c>step</c>).
    /// </summary>
    public const string OptimizerFileName = "optimizer.safetensors";

    /// <summary>The global CPU generator state (<c>torch.cpu</c>) and the data sampler's (<c>sampler</c>).</summary>
    public const string RandomStateFileName = "rng.safetensors";

    /// <summary>The state of the run's <see cref="ICheckpointedCallback"/>s, <c>{StateName}/{key}</c>; written only when there are any.</summary>
    public const string CallbacksFileName = "callbacks.safetensors";

    private const string DirectoryPrefix = "step-";

    private const string TempPrefix = ".tmp-step-";

    private const string TrashPrefix = ".trash-step-";

    private const string CpuGeneratorKey = "torch.cpu";

    private const string SamplerKey = "sampler";

    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true };

    /// <summary>Creates a store over <paramref name="root"/> (created on the first <see cref="Save"/>).</summary>
    /// <param name="root">The directory that holds the checkpoint directories.</param>
    /// <param name="keepLast">How many checkpoints to keep (&gt;= 1); older ones are deleted after each save.</param>
    public CheckpointStore(string root, int keepLast = 3)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(root);
        ArgumentOutOfRangeException.ThrowIfLessThan(keepLast, 1);
        Root = Path.GetFullPath(root);
        KeepLast = keepLast;
    }

    /// <summary>The directory holding the checkpoint directories.</summary>
    public string Root { get; }

    /// <summary>How many checkpoints are kept.</summary>
    public int KeepLast { get; }

    /// <summary>Test hook: called with each file name just before that file of a checkpoint is written.</summary>
    internal Action<string>? BeforeFileWritten { get; set; }

    /// <summary>The checkpoint directories under <see cref="Root"/> (named <c>step-N</c>), oldest step first.</summary>
    /// <returns>Full paths; empty when <see cref="Root"/> does not exist.</returns>
    public IReadOnlyList<string> List()
    {
        if (!Directory.Exists(Root))
        {
            return Array.Empty<string>();
        }

        return Directory.EnumerateDirectories(Root, DirectoryPrefix + "*")
            .Select(path => (Path: path, Step: ParseStep(Path.GetFileName(path))))
            .Where(entry => entry.Step >= 0)
            .OrderBy(entry => entry.Step)
            .Select(entry => entry.Path)
            .ToArray();
    }

    /// <summary>The checkpoint with the highest step, or null when there is none.</summary>
    public string? Latest()
    {
        var all = List();
        return all.Count == 0 ? null : all[^1];
    }

    /// <summary>Writes a checkpoint of the trainer's current state (see the class remarks for the guarantees).</summary>
    /// <param name="model">The model whose trained parameters are saved; names come from its <c>named_parameters()</c> and,
    /// for trainable shared tensors, <see cref="PeftModel.SharedParameters"/>.</param>
    /// <param name="trainer">The trainer over that model's parameters.</param>
    /// <param name="dataPosition">How many batches the data source has delivered so far.</param>
    /// <param name="dataSampler">The generator the data source draws from, if any; its state is saved.</param>
    /// <param name="lastLoss">The last step's loss, recorded in the manifest for people and tools.</param>
    /// <returns>The new checkpoint.</returns>
    /// <exception cref="CheckpointException">A parameter or optimizer moment is not finite (nothing is written), a
    /// trained parameter is not part of <paramref name="model"/>, or the write failed (disk full, permissions): the
    /// previous checkpoints are intact.</exception>
    public CheckpointInfo Save(nn.Module model, AdapterTrainer trainer, long dataPosition, Generator? dataSampler = null, double? lastLoss = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentOutOfRangeException.ThrowIfNegative(dataPosition);

        string finalPath = Path.Combine(Root, DirectoryPrefix + trainer.Step.ToString("D8", CultureInfo.InvariantCulture));
        var names = ParameterNames(model, trainer, finalPath);
        var optimizerState = OptimizerCheckpoint.Collect(trainer.Optimizer, names, finalPath);
        var callbacks = CallbackCheckpoint.Of(trainer.Options, finalPath);
        EnsureFinite(names, trainer, finalPath);
        OptimizerCheckpoint.EnsureFinite(trainer.Optimizer, names, trainer.Step, finalPath);

        string tempPath = Path.Combine(Root, TempPrefix + trainer.Step.ToString("D8", CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(Root);
            RemoveStaleDirectories();
            Directory.CreateDirectory(tempPath);
            using (var scope = torch.NewDisposeScope())
            {
                var files = new Dictionary<string, CheckpointFileEntry>(StringComparer.Ordinal);

                var parameters = new List<KeyValuePair<string, Tensor>>();
                for (int i = 0; i < names.Count; i++)
                {
                    parameters.Add(new(names[i], trainer.Parameters[i].detach()));
                }

                WriteTensors(tempPath, ParametersFileName, parameters, metadata: null, files);

                WriteTensors(tempPath, OptimizerFileName, optimizerState.Tensors, optimizerState.Metadata, files);

                var random = new List<KeyValuePair<string, Tensor>> { new(CpuGeneratorKey, torch.get_rng_state()) };
                if (dataSampler is not null)
                {
                    random.Add(new(SamplerKey, dataSampler.get_state()));
                }

                WriteTensors(tempPath, RandomStateFileName, random, metadata: null, files);
                if (callbacks.Count > 0)
                {
                    WriteTensors(tempPath, CallbacksFileName, CallbackCheckpoint.Collect(callbacks), metadata: null, files);
                }

                var manifest = new CheckpointManifest
                {
                    Step = trainer.Step,
                    SkippedSteps = trainer.SkippedSteps,
                    TotalSteps = trainer.Options.TotalSteps,
                    Optimizer = trainer.Optimizer.Kind,
                    DataPosition = dataPosition,
                    NextLearningRate = trainer.CurrentLearningRate,
                    LastLoss = lastLoss is double loss && double.IsFinite(loss) ? loss : null,
                    CreatedUtc = DateTimeOffset.UtcNow,
                    Parameters = names,
                    HasSamplerState = dataSampler is not null,
                    Files = files,
                };
                BeforeFileWritten?.Invoke(ManifestFileName);
                DurableFiles.WriteAllBytes(Path.Combine(tempPath, ManifestFileName), JsonSerializer.SerializeToUtf8Bytes(manifest, s_json));
                DurableFiles.FlushDirectory(tempPath);

                string? displaced = null;
                if (Directory.Exists(finalPath))
                {
                    // Same step written again (e.g. after a resume): the old one moves aside only once the new one is complete.
                    displaced = Path.Combine(Root, TrashPrefix + Guid.NewGuid().ToString("N"));
                    Directory.Move(finalPath, displaced);
                }

                Directory.Move(tempPath, finalPath);
                DurableFiles.FlushDirectory(Root);
                if (displaced is not null)
                {
                    Directory.Delete(displaced, recursive: true);
                }

                Prune();
                return new CheckpointInfo(finalPath, manifest);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            TryDelete(tempPath);
            throw new CheckpointException(finalPath, $"writing the checkpoint failed ({ex.Message}); the previous checkpoints in {Root} are intact.", ex);
        }
        catch
        {
            TryDelete(tempPath);
            throw;
        }
    }

    private static long ParseStep(string name) =>
        name.StartsWith(DirectoryPrefix, StringComparison.Ordinal)
        && long.TryParse(name.AsSpan(DirectoryPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out long step)
            ? step
            : -1;

    private static List<string> ParameterNames(nn.Module model, AdapterTrainer trainer, string path)
    {
        var byHandle = new Dictionary<IntPtr, string>();
        foreach (var (name, parameter) in model.named_parameters())
        {
            byHandle.TryAdd(parameter.Handle, name);
        }

        foreach (var (name, parameter) in model.SharedParameters())
        {
            byHandle.TryAdd(parameter.Handle, name); // trainable shared tensors (VB-LoRA's bank) are in no module
        }

        var names = new List<string>(trainer.Parameters.Count);
        foreach (var parameter in trainer.Parameters)
        {
            if (!byHandle.TryGetValue(parameter.Handle, out var name))
            {
                throw new CheckpointException(path, $"a trained parameter of shape [{string.Join(", ", parameter.shape)}] is not a parameter of the given model; pass the model the trainer's parameters came from.");
            }

            names.Add(name);
        }

        return names;
    }

    private static void EnsureFinite(List<string> names, AdapterTrainer trainer, string path)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        for (int i = 0; i < names.Count; i++)
        {
            if (!torch.isfinite(trainer.Parameters[i]).all().item<bool>())
            {
                throw new CheckpointException(path, $"refusing to write a checkpoint: the weights of {names[i]} hold NaN or infinite values at step {trainer.Step}. The previous checkpoints are kept.");
            }
        }
    }

    private void WriteTensors(string directory, string fileName, List<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata, Dictionary<string, CheckpointFileEntry> files)
    {
        BeforeFileWritten?.Invoke(fileName);
        string path = Path.Combine(directory, fileName);
        SafetensorsFile.Write(path, tensors, metadata);
        files[fileName] = new CheckpointFileEntry(new FileInfo(path).Length, DurableFiles.Sha256(path));
    }

    private void RemoveStaleDirectories()
    {
        foreach (var stale in Directory.EnumerateDirectories(Root, ".*-step-*"))
        {
            string name = Path.GetFileName(stale);
            if (name.StartsWith(TempPrefix, StringComparison.Ordinal) || name.StartsWith(TrashPrefix, StringComparison.Ordinal))
            {
                TryDelete(stale);
            }
        }
    }

    private void Prune()
    {
        var all = List();
        for (int i = 0; i < all.Count - KeepLast; i++)
        {
            // Renamed first, so a crash mid-delete never leaves a half-deleted step-N that looks like a checkpoint.
            string trash = Path.Combine(Root, TrashPrefix + Guid.NewGuid().ToString("N"));
            Directory.Move(all[i], trash);
            TryDelete(trash);
        }
    }

    private static void TryDelete(string directory)
    {
        try
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Best effort: a leftover hidden directory is ignored by List() and removed by the next Save().
        }
    }
}
