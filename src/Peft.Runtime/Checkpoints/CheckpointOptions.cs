using Peft.Serialization;

namespace Peft.Checkpoints;

/// <summary>How <see cref="HfCheckpoint.LoadInto"/> maps a checkpoint onto a model.</summary>
/// <remarks>
/// A checkpoint name becomes a model (state-dict) name in three steps: <see cref="StripPrefix"/> is removed where the
/// name starts with it, <see cref="AddPrefix"/> is prepended, then <see cref="Rename"/> (if set) maps the result; a
/// <see langword="null"/> from <see cref="Rename"/> skips the tensor (listed in <see cref="CheckpointLoadReport.Skipped"/>,
/// never "unexpected"). With no options the names are used as they are.
/// </remarks>
public sealed record CheckpointLoadOptions
{
    /// <summary>The defaults: strict, identity names, convert to the model's dtypes, ties as config.json says.</summary>
    public static CheckpointLoadOptions Default { get; } = new();

    /// <summary>
    /// <see langword="true"/> (default): any missing, unexpected, mis-shaped or doubly mapped tensor throws
    /// <see cref="CheckpointMismatchException"/> and nothing is copied. <see langword="false"/>: every tensor that fits is
    /// copied and the rest is listed in the returned report.
    /// </summary>
    public bool Strict { get; init; } = true;

    /// <summary>Removed from the start of checkpoint names that have it (e.g. <c>"model."</c> to load a full causal-LM checkpoint into the bare decoder).</summary>
    public string? StripPrefix { get; init; }

    /// <summary>Prepended to every checkpoint name after <see cref="StripPrefix"/> (e.g. <c>"model."</c> to load a bare decoder checkpoint into a causal-LM model).</summary>
    public string? AddPrefix { get; init; }

    /// <summary>Maps a (prefix-adjusted) checkpoint name to a model name; <see langword="null"/> skips the tensor.</summary>
    public Func<string, string?>? Rename { get; init; }

    /// <summary>
    /// <see langword="false"/> (default): each tensor is converted to its parameter's dtype (an F16/BF16 checkpoint loads
    /// into an F32 model). <see langword="true"/>: the model takes the checkpoint's floating-point dtype (the whole model,
    /// adapters included, is converted with <c>Module.to(dtype)</c> before copying, like transformers'
    /// <c>torch_dtype="auto"</c>); the checkpoint's floating-point tensors must then share one dtype.
    /// </summary>
    public bool KeepCheckpointDType { get; init; }

    /// <summary>
    /// Whether the output embedding is tied to the input embedding: when the checkpoint lacks
    /// <see cref="OutputEmbeddingName"/>, it is copied from the input embedding. <see langword="null"/> (default) reads
    /// <see cref="HfConfig.TiesWordEmbeddings"/> (transformers' default: tied when config.json does not say).
    /// </summary>
    public bool? TieWordEmbeddings { get; init; }

    /// <summary>The model name of the output embedding (default <c>lm_head.weight</c>).</summary>
    public string OutputEmbeddingName { get; init; } = "lm_head.weight";

    /// <summary>
    /// The model name of the input embedding a tied output embedding is copied from; <see langword="null"/> (default)
    /// takes the first of <see cref="HfCheckpoint.InputEmbeddingCandidates"/> the model has.
    /// </summary>
    public string? InputEmbeddingName { get; init; }

    /// <summary>
    /// Model names whose tensors the checkpoint stores transposed: the predicate gets the model (state-dict) name and
    /// returns <see langword="true"/> for a weight kept as <c>[in, out]</c> on disk while the model's <c>Linear</c> holds
    /// <c>[out, in]</c> (transformers' <c>Conv1D</c>, used by GPT-2). Such a tensor must be 2-D; its shape is checked
    /// reversed and it is transposed while copying. <see langword="null"/> (default): nothing is transposed.
    /// </summary>
    public Func<string, bool>? TransposedInCheckpoint { get; init; }

    internal string? MapName(string checkpointName)
    {
        var name = checkpointName;
        if (!string.IsNullOrEmpty(StripPrefix) && name.StartsWith(StripPrefix, StringComparison.Ordinal))
        {
            name = name[StripPrefix.Length..];
        }
        if (!string.IsNullOrEmpty(AddPrefix))
        {
            name = AddPrefix + name;
        }
        return Rename is null ? name : Rename(name);
    }
}

/// <summary>How <see cref="HfCheckpoint.Save"/> writes a model.</summary>
/// <remarks>
/// A model (state-dict) name becomes a checkpoint name as in <see cref="CheckpointLoadOptions"/>: <see cref="StripPrefix"/>
/// removed, <see cref="AddPrefix"/> prepended, then <see cref="Rename"/>; a <see langword="null"/> from <see cref="Rename"/>
/// leaves the tensor out.
/// </remarks>
public sealed record CheckpointSaveOptions
{
    /// <summary>The defaults: 5 GB shards (transformers' default), dtypes as in the model, ties as config.json says.</summary>
    public static CheckpointSaveOptions Default { get; } = new();

    /// <summary>
    /// The largest shard, in bytes of tensor data (default 5,000,000,000, transformers' <c>"5GB"</c>). Tensors are placed
    /// in order and a new shard starts when the next tensor would not fit; a tensor larger than the limit gets a shard of
    /// its own. When everything fits in one shard, a single <c>model.safetensors</c> is written.
    /// </summary>
    public long MaxShardSizeBytes { get; init; } = 5_000_000_000;

    /// <summary>
    /// The dtype of floating-point tensors in the files: <see cref="SafetensorsDType.F32"/>, <see cref="SafetensorsDType.F16"/>
    /// or <see cref="SafetensorsDType.BF16"/>; <see langword="null"/> (default) writes each tensor in the model's dtype.
    /// Integer and boolean buffers are always written as they are. config.json's <c>torch_dtype</c> is set to match.
    /// </summary>
    public SafetensorsDType? DType { get; init; }

    /// <summary>Removed from the start of model names that have it.</summary>
    public string? StripPrefix { get; init; }

    /// <summary>Prepended to every model name after <see cref="StripPrefix"/>.</summary>
    public string? AddPrefix { get; init; }

    /// <summary>Maps a (prefix-adjusted) model name to a checkpoint name; <see langword="null"/> leaves the tensor out.</summary>
    public Func<string, string?>? Rename { get; init; }

    /// <summary>
    /// Whether the output embedding is tied: a tied <see cref="OutputEmbeddingName"/> is left out of the files, as
    /// transformers does (its values must equal the input embedding's, or saving fails). <see langword="null"/> (default)
    /// reads <see cref="HfConfig.TiesWordEmbeddings"/> of the config being saved.
    /// </summary>
    public bool? TieWordEmbeddings { get; init; }

    /// <summary>The model name of the output embedding (default <c>lm_head.weight</c>).</summary>
    public string OutputEmbeddingName { get; init; } = "lm_head.weight";

    /// <summary>The model name of the input embedding; <see langword="null"/> takes the first of <see cref="HfCheckpoint.InputEmbeddingCandidates"/> the model has.</summary>
    public string? InputEmbeddingName { get; init; }

    /// <summary>
    /// Model names whose 2-D tensors are written transposed (<c>[in, out]</c> for a <c>Linear</c>'s <c>[out, in]</c>
    /// weight, the layout of transformers' <c>Conv1D</c>); the inverse of <see cref="CheckpointLoadOptions.TransposedInCheckpoint"/>.
    /// The predicate gets the model name. <see langword="null"/> (default): nothing is transposed.
    /// </summary>
    public Func<string, bool>? TransposedInCheckpoint { get; init; }

    internal string? MapName(string modelName)
    {
        var name = modelName;
        if (!string.IsNullOrEmpty(StripPrefix) && name.StartsWith(StripPrefix, StringComparison.Ordinal))
        {
            name = name[StripPrefix.Length..];
        }
        if (!string.IsNullOrEmpty(AddPrefix))
        {
            name = AddPrefix + name;
        }
        return Rename is null ? name : Rename(name);
    }
}

/// <summary>What <see cref="HfCheckpoint.LoadInto"/> did (or, in <see cref="CheckpointMismatchException.Report"/>, would have done).</summary>
public sealed class CheckpointLoadReport
{
    internal CheckpointLoadReport(IReadOnlyList<string> loaded, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected,
        IReadOnlyList<string> shapeMismatches, IReadOnlyList<string> duplicates, IReadOnlyList<string> skipped,
        IReadOnlyDictionary<string, string> tied)
    {
        Loaded = loaded;
        Missing = missing;
        Unexpected = unexpected;
        ShapeMismatches = shapeMismatches;
        Duplicates = duplicates;
        Skipped = skipped;
        Tied = tied;
    }

    /// <summary>Model names that received a checkpoint tensor (tied ones included), in state-dict order.</summary>
    public IReadOnlyList<string> Loaded { get; }

    /// <summary>Model names (base weights and persistent buffers; adapter parameters never) the checkpoint does not provide.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>Checkpoint names (as in the files) whose mapped name the model does not have.</summary>
    public IReadOnlyList<string> Unexpected { get; }

    /// <summary>One entry per mis-shaped tensor: <c>"name: checkpoint [a, b], model [c, d]"</c>.</summary>
    public IReadOnlyList<string> ShapeMismatches { get; }

    /// <summary>One entry per model name that several checkpoint names map to: <c>"name: from a, b"</c>.</summary>
    public IReadOnlyList<string> Duplicates { get; }

    /// <summary>Checkpoint names that <see cref="CheckpointLoadOptions.Rename"/> mapped to <see langword="null"/>.</summary>
    public IReadOnlyList<string> Skipped { get; }

    /// <summary>Tied tensors filled from another: model name to the model name it was copied from.</summary>
    public IReadOnlyDictionary<string, string> Tied { get; }

    /// <summary>Whether nothing was missing, unexpected, mis-shaped or doubly mapped.</summary>
    public bool IsComplete => Missing.Count == 0 && Unexpected.Count == 0 && ShapeMismatches.Count == 0 && Duplicates.Count == 0;
}
