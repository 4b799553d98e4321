using System.Globalization;
using System.Text.Json.Nodes;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft.Cli;

/// <summary>
/// <c>peft inspect</c> and <c>peft merge</c> of this library's LoFiT directories (<see cref="LoFiTFiles"/>; PEFT has no
/// LoFiT). Inspect shows the settings as <see cref="LoFiTFiles.ReadConfig"/> reads them (a refused setting with its reason),
/// one module per attention with its heads and output projection, and the tensor table. Merge folds the vectors into the
/// output projections of a base safetensors file with <see cref="LoFiTFiles.FoldInto"/> (the model merge's
/// <see cref="LoFiTMath.Fold"/>), keyed as the model's state dict.
/// </summary>
internal static class LoFiTCli
{
    public static bool IsLoFiT(string directory) => Directory.Exists(directory) && LoFiTFiles.IsLoFiT(directory);

    public static JsonObject Report(string directory)
    {
        string weights = AdapterDirectory.WeightsPath(directory);
        using var reader = SafetensorsFile.Open(weights);
        var report = new JsonObject
        {
            ["kind"] = "adapter",
            ["path"] = Path.GetFullPath(directory),
            ["peft_type"] = LoFiTConfig.PeftType,
            ["method"] = "LoFiT",
        };
        try
        {
            var file = LoFiTFiles.ReadConfig(directory);
            report["adapter_name"] = file.AdapterName;
            report["components"] = LoFiTConfig.FileName(file.Config.Components);
            report["l1_lambda"] = file.Config.L1Lambda;
            report["init_std"] = file.Config.InitStd;
            report["selected_heads"] = file.Layers.Sum(l => l.Heads.Count);
            report["modules"] = new JsonArray(file.Layers.Select(l => (JsonNode?)new JsonObject
            {
                ["module"] = l.Attention,
                ["layer"] = l.Layer,
                ["heads"] = new JsonArray(l.Heads.Select(h => (JsonNode?)h).ToArray()),
                ["head_dim"] = l.HeadDim,
                ["output_projection"] = l.OutputProjection,
            }).ToArray());
        }
        catch (AdapterFormatException ex)
        {
            report["settings_error"] = ex.Message;
        }

        report["weights_file"] = reader.Path;
        var tensors = new JsonArray();
        long count = 0;
        foreach (var info in reader.Tensors)
        {
            tensors.Add(new JsonObject
            {
                ["name"] = info.Name,
                ["dtype"] = info.DType.ToHeaderString(),
                ["shape"] = new JsonArray(info.Shape.Select(d => (JsonNode?)d).ToArray()),
            });
            count += info.ElementCount;
        }

        report["tensors"] = tensors;
        report["trainable_parameters"] = count;
        return report;
    }

    /// <summary>Writes <paramref name="output"/>: the base file's tensors with the LoFiT adapter folded in.</summary>
    /// <returns>The changed keys.</returns>
    public static IReadOnlyList<string> Merge(string basePath, string directory, string output)
    {
        if (Directory.Exists(basePath))
        {
            throw CliException.Usage($"{basePath}: a LoFiT adapter merges into a base safetensors file, not a model directory; pass the weights file as --base.");
        }

        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var order = new List<string>();
        IReadOnlyDictionary<string, string> metadata;
        using (var reader = SafetensorsFile.Open(basePath))
        {
            metadata = reader.Metadata.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            foreach (var info in reader.Tensors)
            {
                tensors[info.Name] = reader.ReadTensor(info.Name);
                order.Add(info.Name);
            }
        }

        IReadOnlyList<string> changed;
        try
        {
            changed = LoFiTFiles.FoldInto(directory, tensors);
        }
        catch (PeftFileException ex)
        {
            throw CliException.Failure($"{ex.Message} (base {basePath})");
        }

        string temp = output + ".tmp-" + Guid.NewGuid().ToString("N");
        SafetensorsFile.Write(temp, order.Select(n => new KeyValuePair<string, Tensor>(n, tensors[n])), metadata);
        File.Move(temp, output, overwrite: true);
        return changed;
    }

    public static string Summary(string output, string directory, int count) =>
        string.Create(CultureInfo.InvariantCulture, $"wrote {Path.GetFullPath(output)} ({count} tensor(s) changed by the LoFiT adapter {directory})");
}
