using System.Text.Json.Serialization;

namespace Peft.Training.Checkpoints;

/// <summary>Size and SHA-256 of one file of a checkpoint, recorded in its manifest and checked on load.</summary>
/// <param name="Bytes">The file's length in bytes.</param>
/// <param name="Sha256">The file's SHA-256, lower-case hexadecimal.</param>
public sealed record CheckpointFileEntry(long Bytes, string Sha256);

/// <summary>
/// The <c>manifest.json</c> of a checkpoint directory: what the checkpoint holds and where training stood. It is the
/// last file written, so a checkpoint without it never became visible.
/// </summary>
public sealed record CheckpointManifest
{
    /// <summary>The value of <see cref="Format"/> this library writes.</summary>
    public const string FormatName = "peft-dotnet-training-checkpoint";

    /// <summary>The <see cref="FormatVersion"/> this library writes and reads.</summary>
    public const int CurrentFormatVersion = 1;

    /// <summary>Always <see cref="FormatName"/>.</summary>
    [JsonPropertyName("format")]
    public string Format { get; init; } = FormatName;

    /// <summary>Layout version, <see cref="CurrentFormatVersion"/>.</summary>
    [JsonPropertyName("format_version")]
    public int FormatVersion { get; init; } = CurrentFormatVersion;

    /// <summary>Completed steps (<see cref="AdapterTrainer.Step"/>) when the checkpoint was written.</summary>
    [JsonPropertyName("step")]
    public int Step { get; init; }

    /// <summary>How many of those steps were skipped (<see cref="AdapterTrainer.SkippedSteps"/>).</summary>
    [JsonPropertyName("skipped_steps")]
    public int SkippedSteps { get; init; }

    /// <summary><see cref="TrainingOptions.TotalSteps"/> of the run; a resume must use the same schedule.</summary>
    [JsonPropertyName("total_steps")]
    public int TotalSteps { get; init; }

    /// <summary>
    /// The optimizer's <see cref="PeftOptimizer.Kind"/> (<c>AdamW</c>, <c>SGD</c>, ...); a resume must use the same kind.
    /// Null in checkpoints written before the kind was recorded, which are AdamW's.
    /// </summary>
    [JsonPropertyName("optimizer")]
    public string? Optimizer { get; init; }

    /// <summary>Batches the data source had delivered (the next batch to read is this one, 0-based).</summary>
    [JsonPropertyName("data_position")]
    public long DataPosition { get; init; }

    /// <summary>The learning rate the next step will use.</summary>
    [JsonPropertyName("next_learning_rate")]
    public double NextLearningRate { get; init; }

    /// <summary>The loss of the last step before the checkpoint, when known and finite.</summary>
    [JsonPropertyName("last_loss")]
    public double? LastLoss { get; init; }

    /// <summary>When the checkpoint was written (UTC).</summary>
    [JsonPropertyName("created_utc")]
    public DateTimeOffset CreatedUtc { get; init; }

    /// <summary>Names (state-dict paths in the model) of the trained parameters, in the trainer's order.</summary>
    [JsonPropertyName("parameters")]
    public IReadOnlyList<string> Parameters { get; init; } = Array.Empty<string>();

    /// <summary>Whether the checkpoint holds the state of a data sampler generator.</summary>
    [JsonPropertyName("has_sampler_state")]
    public bool HasSamplerState { get; init; }

    /// <summary>Every other file of the checkpoint, by file name, with its size and hash.</summary>
    [JsonPropertyName("files")]
    public IReadOnlyDictionary<string, CheckpointFileEntry> Files { get; init; } = new Dictionary<string, CheckpointFileEntry>();
}
