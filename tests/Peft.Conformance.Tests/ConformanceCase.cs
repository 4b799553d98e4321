using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>
/// One row of the conformance matrix: a method's options applied by configuration to <see cref="TinyModel"/>, and what
/// Hugging Face PEFT's format and the method's paper say must hold. A method joins the matrix with a rows file in
/// <c>Rows/</c> and one line in <see cref="ConformanceMatrix"/>.
/// </summary>
/// <param name="Name">The row's name (also its generator snapshot's file name).</param>
/// <param name="Options">The adapter options.</param>
/// <param name="Targets">The modules of <see cref="TinyModel"/> to adapt (<c>embed</c>, <c>norm</c>, <c>fc1</c>, <c>fc2</c>).</param>
public sealed record ConformanceCase(string Name, PeftAdapterOptions Options, params string[] Targets)
{
    /// <summary>A new adapter leaves the outputs unchanged (false where the method's documented init says otherwise).</summary>
    public bool IdentityAtInit { get; init; } = true;

    /// <summary>The method merges into the base weights.</summary>
    public bool Mergeable { get; init; } = true;

    /// <summary>The adapter's file holds tensors computed from its parameters (<see cref="IComputedFileTensorsAdapter"/>,
    /// P-tuning's encoded prompt), which load into an adapter of another form: the round trip then checks bitwise equal outputs
    /// and that the loaded adapter saves the same file, instead of equal parameters.</summary>
    public bool FileHoldsComputedTensors { get; init; }

    /// <summary>Merged forward vs unmerged forward (max abs difference).</summary>
    public double MergeTolerance { get; init; } = 1e-5;

    /// <summary>Unmerged base parameters vs the originals (max abs difference).</summary>
    public double UnmergeTolerance { get; init; } = 1e-6;

    /// <summary>The adapter file's tensor keys, exactly.</summary>
    public IReadOnlyList<string> ExpectedKeys { get; init; } = Array.Empty<string>();

    /// <summary>The config's keys, exactly: PEFT's config class's fields (<see cref="PeftConfigKeys"/>).</summary>
    public IReadOnlyCollection<string> ConfigKeys { get; init; } = Array.Empty<string>();

    /// <summary>Config values the file must hold (a subset of the keys).</summary>
    public IReadOnlyDictionary<string, JsonNode?> ExpectedConfig { get; init; } = new Dictionary<string, JsonNode?>();

    /// <summary>The attribute the generator snapshot declares on a member built with <see cref="AttributeLayer"/>.</summary>
    public string Attribute { get; init; } = string.Empty;

    /// <summary>The layer the snapshot's member is built with.</summary>
    public string AttributeLayer { get; init; } = "Linear(8, 12)";

    /// <summary>Runs after the adapter is applied, before any check: a data-driven initialisation (EVA's <c>InitializeEva</c>,
    /// CorDA's <c>PreprocessCorDA</c>); null for none.</summary>
    public Action<TinyModel>? Calibrate { get; init; }

    /// <summary>The calibration rewrites the base weights (CorDA's residual): such rows load their files into a model
    /// calibrated the same way and merge files onto the residual base (a load or <c>peft merge</c> cannot repeat a
    /// calibration). False where the base is untouched (EVA: its files load into a fresh model).</summary>
    public bool CalibrationRewritesBase { get; init; }

    /// <summary>Runs before the merge checks, after <see cref="Calibrate"/>: the step a method's documented merge path takes
    /// first (QLoRA: <c>DequantizeBase()</c>, since a quantized base cannot take a dense update); with
    /// <see cref="CalibrationRewritesBase"/> the base file <c>peft merge</c> reads is saved after it. Null for none.</summary>
    public Action<TinyModel>? BeforeMerge { get; init; }

    /// <summary>Attributes the analyzers must reject: (attribute, layer, expected diagnostic IDs).</summary>
    public IReadOnlyList<(string Attribute, string Layer, string[] Ids)> BadAttributes { get; init; } = Array.Empty<(string, string, string[])>();

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>The key sets Hugging Face PEFT 0.20.0 writes (<c>asdict(config)</c>): the base fields and each config class's.</summary>
public static class PeftConfigKeys
{
    /// <summary>PeftConfigMixin/PeftConfig fields every config has.</summary>
    public static readonly string[] Base =
    {
        "task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision", "inference_mode",
    };

    /// <summary>The union of <see cref="Base"/> and <paramref name="fields"/>.</summary>
    public static HashSet<string> With(params string[] fields) => new(Base.Concat(fields), StringComparer.Ordinal);
}
