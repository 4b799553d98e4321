using Peft.Serialization;
using Peft.Training.Masks;
using static TorchSharp.torch;

namespace Peft.Cli;

/// <summary>
/// <c>peft merge</c> of a sparse delta (<see cref="SparseDelta"/>: SPT's and ID³'s trained entries of base weights) into a
/// base safetensors file: the same addition <see cref="SparseDelta.ApplyTo(TorchSharp.torch.nn.Module)"/> does on a model,
/// on the file's tensors; every other tensor and the metadata are kept.
/// </summary>
internal static class SparseDeltaMerge
{
    /// <summary>Whether <paramref name="path"/> is a sparse delta file (its metadata says so).</summary>
    public static bool IsSparseDelta(string path)
    {
        if (!File.Exists(path))
        {
            return false;
        }

        using var reader = SafetensorsFile.Open(path);
        return reader.Metadata.TryGetValue("format", out var format) && format == SparseDelta.FormatName;
    }

    /// <summary>Writes <paramref name="output"/>: the base file's tensors with the delta added.</summary>
    /// <returns>The names of the changed tensors and the entry count.</returns>
    public static (IReadOnlyList<string> Names, long Entries) Merge(string basePath, string deltaPath, string output)
    {
        if (Directory.Exists(basePath))
        {
            throw CliException.Usage($"{basePath}: a sparse delta merges into a base safetensors file, not a model directory; pass the weights file as --base.");
        }

        using var scope = NewDisposeScope();
        using var delta = SparseDelta.Load(deltaPath);
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

        try
        {
            delta.ApplyTo(tensors);
        }
        catch (ArgumentException ex)
        {
            throw CliException.Failure($"{deltaPath}: {ex.Message} (base {basePath})");
        }

        string temp = output + ".tmp-" + Guid.NewGuid().ToString("N");
        SafetensorsFile.Write(temp, order.Select(n => new KeyValuePair<string, Tensor>(n, tensors[n])), metadata);
        File.Move(temp, output, overwrite: true);
        return (delta.Names, delta.Count);
    }
}
