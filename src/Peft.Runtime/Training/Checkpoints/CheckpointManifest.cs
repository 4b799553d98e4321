using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Peft.Serialization;

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

    /// <summary>The largest step (and total step count) a manifest may name: far beyond any real run, far below overflow.</summary>
    internal const int MaxSteps = 1_000_000_000;

    /// <summary>
    /// Reads a manifest object written by <see cref="CheckpointStore.Save"/>: every field is required (except
    /// <c>last_loss</c>, which may be null), has its JSON type and is in range; a problem is a <see cref="CheckpointException"/>
    /// naming <paramref name="path"/>, the field and the expected value. Unknown keys are ignored.
    /// </summary>
    internal static CheckpointManifest FromJson(JsonObject obj, string path)
    {
        var fields = new JsonFields(obj, (field, problem) => new CheckpointException(path, field, problem + "."));
        string format = fields.RequiredString("format");
        if (format != FormatName)
        {
            throw fields.Error("format", $"not a training checkpoint manifest (expected \"format\": \"{FormatName}\", found \"{format}\")");
        }

        int version = fields.Required("format_version", (f, k) => f.Int(k, 0), "an integer");
        if (version != CurrentFormatVersion)
        {
            throw fields.Error("format_version", $"format_version {version} is not supported (this library reads {CurrentFormatVersion})");
        }

        int totalSteps = fields.Required("total_steps", (f, k) => f.Int(k, 1, MaxSteps), $"an integer in [1, {MaxSteps}]");
        int step = fields.Required("step", (f, k) => f.Int(k, 0, totalSteps), $"an integer in [0, total_steps = {totalSteps}]");
        int skipped = fields.Required("skipped_steps", (f, k) => f.Int(k, 0, step), $"an integer in [0, step = {step}]");
        long dataPosition = fields.Required("data_position", (f, k) => f.Long(k, 0, long.MaxValue), "an integer >= 0");
        double learningRate = fields.Required("next_learning_rate", (f, k) => f.Number(k, 0, minInclusive: true), "a finite number >= 0");
        double? lastLoss = fields.Number("last_loss", double.MinValue, minInclusive: true);
        string createdText = fields.RequiredString("created_utc");
        if (!DateTimeOffset.TryParse(createdText, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var created))
        {
            throw fields.Error("created_utc", $"\"created_utc\" must be an ISO 8601 date and time, not \"{createdText}\"");
        }
        bool hasSampler = fields.Required("has_sampler_state", (f, k) => f.Bool(k), "true or false");
        string? optimizer = fields.String("optimizer"); // absent in checkpoints written before optimizers were pluggable: AdamW

        var parameters = new List<string>();
        if (fields.Node("parameters") is not JsonArray array)
        {
            throw fields.Error("parameters", $"\"parameters\" must be an array of parameter names, not {JsonFields.Show(fields.Node("parameters"))}");
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonValue value || value.GetValueKind() != JsonValueKind.String || value.GetValue<string>() is not { Length: > 0 } name)
            {
                throw fields.Error("parameters", $"\"parameters\"[{i}] must be a non-empty parameter name, not {JsonFields.Show(array[i])}");
            }
            if (!seen.Add(name))
            {
                throw fields.Error("parameters", $"\"parameters\" names {name} twice");
            }
            parameters.Add(name);
        }

        var files = new Dictionary<string, CheckpointFileEntry>(StringComparer.Ordinal);
        if (fields.Node("files") is not JsonObject fileMap)
        {
            throw fields.Error("files", $"\"files\" must be an object (file name to size and SHA-256), not {JsonFields.Show(fields.Node("files"))}");
        }
        foreach (var (name, node) in fileMap)
        {
            string key = "files." + name;
            if (name.Length == 0 || name is "." or ".." || name.Contains('/') || name.Contains('\\') || name.Contains('\0'))
            {
                throw fields.Error(key, $"\"files\" lists \"{name}\", which is not a file name inside the checkpoint directory");
            }
            if (node is not JsonObject entry)
            {
                throw fields.Error(key, $"\"{key}\" must be an object with Bytes and Sha256, not {JsonFields.Show(node)}");
            }
            var entryFields = new JsonFields(entry, (field, problem) => new CheckpointException(path, key + "." + field, $"in \"{key}\": {problem}."));
            long bytes = entryFields.Required("Bytes", (f, k) => f.Long(k, 0, long.MaxValue), "an integer >= 0");
            string sha = entryFields.RequiredString("Sha256");
            if (sha.Length != 64 || !sha.All(char.IsAsciiHexDigit))
            {
                throw fields.Error(key + ".Sha256", $"\"{key}\".Sha256 must be 64 hexadecimal digits, not \"{(sha.Length > 70 ? sha[..70] + "..." : sha)}\"");
            }
            files.Add(name, new CheckpointFileEntry(bytes, sha));
        }

        return new CheckpointManifest
        {
            Format = format,
            FormatVersion = version,
            Step = step,
            SkippedSteps = skipped,
            TotalSteps = totalSteps,
            DataPosition = dataPosition,
            NextLearningRate = learningRate,
            LastLoss = lastLoss,
            CreatedUtc = created,
            Parameters = parameters,
            HasSamplerState = hasSampler,
            Files = files,
            Optimizer = optimizer,
        };
    }
}
