using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft;

/// <summary>
/// The heads LoFiT's stage 1 kept (<see cref="LoFiT.SelectHeads(TorchSharp.torch.nn.Module, int, string)"/>), best first,
/// with the norm ‖A_{ℓ,h}‖₂ that ranked each. Saved as a small JSON file (<see cref="Save"/>: <c>format</c>
/// <c>peft-dotnet-lofit-heads</c>, <c>heads</c> <c>[[layer, head], …]</c>, <c>scores</c>) so stage 2 can run later or elsewhere.
/// </summary>
public sealed class LoFiTHeadSelection
{
    /// <summary>The <c>format</c> value of a selection file.</summary>
    public const string FormatName = "peft-dotnet-lofit-heads";

    /// <summary>Creates a selection.</summary>
    /// <param name="heads">The heads, best first; distinct.</param>
    /// <param name="scores">Each head's ‖A‖₂ (same length), or null when unknown.</param>
    /// <exception cref="PeftConfigurationException">No head, a repeated or negative one, or scores of another length.</exception>
    public LoFiTHeadSelection(IReadOnlyList<LoFiTHead> heads, IReadOnlyList<double>? scores = null)
    {
        ArgumentNullException.ThrowIfNull(heads);
        if (heads.Count == 0) throw new PeftConfigurationException("A LoFiT head selection needs at least one head.", nameof(heads), null);
        if (heads.Any(h => h.Layer < 0 || h.Head < 0)) throw new PeftConfigurationException("A LoFiT head selection's layers and heads are 0 or more.", nameof(heads), null);
        if (heads.Distinct().Count() != heads.Count)
        {
            var repeated = heads.GroupBy(h => h).First(g => g.Count() > 1).Key;
            throw new PeftConfigurationException($"The LoFiT head selection names layer {repeated.Layer} head {repeated.Head} twice; each head once.", nameof(heads), null);
        }

        if (scores is not null && scores.Count != heads.Count)
        {
            throw new PeftConfigurationException($"The LoFiT head selection has {heads.Count} heads but {scores.Count} scores; give one score per head or none.", nameof(scores), null);
        }

        Heads = heads.ToArray();
        Scores = scores?.ToArray();
    }

    /// <summary>The heads, best first.</summary>
    public IReadOnlyList<LoFiTHead> Heads { get; }

    /// <summary>Each head's ‖A‖₂ when the selection was ranked; else null.</summary>
    public IReadOnlyList<double>? Scores { get; }

    /// <summary>Writes the selection to <paramref name="path"/> atomically.</summary>
    /// <param name="path">The file (its directory must exist).</param>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var json = new JsonObject
        {
            ["format"] = FormatName,
            ["heads"] = new JsonArray(Heads.Select(h => (JsonNode)new JsonArray(h.Layer, h.Head)).ToArray()),
        };
        if (Scores is not null) json["scores"] = new JsonArray(Scores.Select(s => (JsonNode)JsonValue.Create(s)).ToArray());
        Checkpoints.AtomicFile.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>Reads a selection written by <see cref="Save"/>.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The selection.</returns>
    /// <exception cref="AdapterFormatException">The file is missing or not a selection, or a field is wrong (the message names
    /// the file and the field).</exception>
    public static LoFiTHeadSelection Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new AdapterFormatException(path, null, "the LoFiT head selection file is missing; write one with LoFiTHeadSelection.Save.");
        var fields = new JsonFields(JsonFile.ReadObject(path, JsonFileKind.AdapterConfig), (field, problem) => new AdapterFormatException(path, field, problem));
        string format = fields.RequiredString("format");
        if (format != FormatName) throw fields.Error("format", $"\"format\" is '{format}', not '{FormatName}': this is not a LoFiT head selection");
        var heads = ReadHeads(fields, "heads");
        List<double>? scores = null;
        if (fields.Node("scores") is { } node)
        {
            if (node is not JsonArray array || array.Any(s => s is null || s.GetValueKind() != JsonValueKind.Number))
            {
                throw fields.Error("scores", "\"scores\" must be a list of numbers, one per head");
            }

            scores = array.Select(s => s!.GetValue<double>()).ToList();
        }

        try
        {
            return new LoFiTHeadSelection(heads, scores);
        }
        catch (PeftConfigurationException e)
        {
            throw fields.Error(e.MemberName ?? "heads", e.Message);
        }
    }

    /// <summary>Reads <c>[[layer, head], …]</c> from <paramref name="key"/>.</summary>
    internal static List<LoFiTHead> ReadHeads(JsonFields fields, string key)
    {
        if (fields.Node(key) is not JsonArray array || array.Count == 0)
        {
            throw fields.Error(key, $"\"{key}\" must be a non-empty list of [layer, head] pairs");
        }

        var heads = new List<LoFiTHead>(array.Count);
        foreach (var item in array)
        {
            if (item is not JsonArray pair || pair.Count != 2 || pair.Any(v => v is null || v.GetValueKind() != JsonValueKind.Number)
                || !int.TryParse(pair[0]!.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out int layer)
                || !int.TryParse(pair[1]!.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out int head))
            {
                throw fields.Error(key, $"\"{key}\" must hold [layer, head] pairs of integers 0 or more, not {JsonFields.Show(item)}");
            }

            heads.Add(new LoFiTHead(layer, head));
        }

        return heads;
    }
}
