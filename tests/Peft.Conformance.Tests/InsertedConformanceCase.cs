using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Conformance.Tests;

/// <summary>
/// One row of the matrix's inserted-adapter part: a method that inserts modules after a block's sub-layers
/// (<see cref="InsertedAdapter"/>) rather than adapting a layer, applied to <see cref="TinyStack"/>. The layer rows'
/// contract (<see cref="ConformanceCase"/>: adapter options, PEFT files, attributes, merging) cannot express such a method,
/// so these rows name how to insert, save and load, and what the files and the init must be.
/// <see cref="InsertedConformanceTests"/> runs the same checks on every row: the init as documented, only the inserted
/// adapters (and what they share) train and all of them get gradients, disabling gives the base model, merge is refused
/// with the model unchanged, a bitwise file round trip, and the file's exact keys and config fields.
/// </summary>
/// <param name="Name">The row's name.</param>
/// <param name="Insert">Inserts the adapter named "default" into the model.</param>
/// <param name="Save">Saves the adapter named "default" to a directory.</param>
/// <param name="Load">Loads a directory into a fresh model.</param>
/// <param name="WeightsFile">The tensor file's name inside the directory.</param>
/// <param name="ConfigFile">The configuration file's name inside the directory.</param>
public sealed record InsertedConformanceCase(
    string Name,
    Action<nn.Module> Insert,
    Action<nn.Module, string> Save,
    Action<nn.Module, string> Load,
    string WeightsFile,
    string ConfigFile)
{
    /// <summary>For a method whose inserted adapters fold into the base weights through its own call (LoFiT's
    /// <c>MergeLoFiT</c>; the generic <c>Merge</c> still refuses every inserted adapter): merges the adapter named "default".
    /// Null: not mergeable.</summary>
    public Action<nn.Module>? OwnMerge { get; init; }

    /// <summary>Undoes <see cref="OwnMerge"/> (set with it).</summary>
    public Action<nn.Module>? OwnUnmerge { get; init; }

    /// <summary>A new adapter leaves the outputs bit-equal (false where the method's documented init says otherwise).</summary>
    public bool IdentityAtInit { get; init; } = true;

    /// <summary>For a row whose init is documented as close to the base rather than equal (Compacter: the rule is
    /// N(0, 1e-4²)), the largest output difference allowed at init; the difference may round to 0. Null: when
    /// <see cref="IdentityAtInit"/> is false the outputs must change.</summary>
    public double? InitTolerance { get; init; }

    /// <summary>The tensor file's keys, exactly.</summary>
    public IReadOnlyList<string> ExpectedKeys { get; init; } = Array.Empty<string>();

    /// <summary>The config's keys, exactly.</summary>
    public IReadOnlyCollection<string> ConfigKeys { get; init; } = Array.Empty<string>();

    /// <summary>Config values the file must hold.</summary>
    public IReadOnlyDictionary<string, JsonNode?> ExpectedConfig { get; init; } = new Dictionary<string, JsonNode?>();

    /// <summary>
    /// For a method whose file holds tensors computed from its parameters rather than the parameters (prefix tuning through
    /// its MLP: PEFT saves the MLP's output table, and a reload trains that table), what the file holds, computed from a
    /// model; the round trip then compares these bitwise instead of the parameters. Null: the file holds the parameters.
    /// </summary>
    public Func<nn.Module, Tensor>? SavedTensors { get; init; }

    /// <summary>A row for a bottleneck configuration (<see cref="BottleneckAdapters"/>).</summary>
    /// <param name="name">The row's name.</param>
    /// <param name="config">The configuration.</param>
    /// <returns>The row (its expectations still to set).</returns>
    public static InsertedConformanceCase Bottleneck(string name, BottleneckConfig config) => new(
        name,
        m => m.AddBottleneckAdapters(config),
        (m, dir) => m.SaveBottleneckAdapters(dir),
        (m, dir) => m.LoadBottleneckAdapters(dir),
        BottleneckAdapters.WeightsFileName,
        BottleneckAdapters.ConfigFileName);

    /// <summary>A row for a prefix-tuning configuration (<see cref="PrefixTuning"/>, PEFT's PREFIX_TUNING files).</summary>
    /// <param name="name">The row's name.</param>
    /// <param name="config">The configuration.</param>
    /// <returns>The row (its expectations still to set).</returns>
    public static InsertedConformanceCase Prefix(string name, PrefixTuningConfig config) => new(
        name,
        m => m.AddPrefixTuning(config),
        (m, dir) => m.SavePrefixTuning(dir),
        (m, dir) => m.LoadPrefixTuning(dir),
        AdapterFiles.WeightsFileName,
        AdapterFiles.ConfigFileName)
    {
        IdentityAtInit = false,
        SavedTensors = m => m.PrefixTable(),
    };

    /// <inheritdoc />
    public override string ToString() => Name;
}
