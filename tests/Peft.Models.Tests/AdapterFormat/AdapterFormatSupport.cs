using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.AdapterFormat;

/// <summary>
/// Checks of saved adapter directories against Hugging Face PEFT's published format (peft/utils/save_and_load.py
/// get_peft_model_state_dict, PeftConfig.save_pretrained): no Python here, so these check the format, not PEFT itself.
/// </summary>
internal static class AdapterFormatSupport
{
    public static string TempDir(string tag)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"peft-format-{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>
    /// Reads adapter_config.json and checks what every PEFT config has: a JSON object with sorted keys and 2-space
    /// indentation, <c>inference_mode: true</c>, <c>peft_version</c> and the expected <c>peft_type</c>.
    /// </summary>
    public static JsonObject Config(string directory, string peftType)
    {
        string text = File.ReadAllText(Path.Combine(directory, AdapterFiles.ConfigFileName));
        var config = JsonNode.Parse(text)!.AsObject();
        var keys = config.Select(p => p.Key).ToList();
        Assert.Equal(keys.OrderBy(k => k, StringComparer.Ordinal), keys);
        Assert.StartsWith("{\n  \"", text, StringComparison.Ordinal);
        Assert.Equal(peftType, (string?)config["peft_type"]);
        Assert.True((bool?)config["inference_mode"]);
        Assert.Equal(AdapterFiles.PeftVersion, (string?)config["peft_version"]);
        return config;
    }

    /// <summary>A JSON array of strings as a sorted list (null for JSON null).</summary>
    public static string[]? Names(JsonNode? node) => node?.AsArray().Select(n => n!.GetValue<string>()).OrderBy(n => n, StringComparer.Ordinal).ToArray();

    /// <summary>
    /// Checks adapter_model.safetensors: metadata exactly <c>{"format": "pt"}</c>, float32 tensors, and exactly the
    /// expected keys with their shapes.
    /// </summary>
    public static void AssertWeights(string directory, IReadOnlyDictionary<string, long[]> expected)
    {
        using var reader = SafetensorsFile.Open(Path.Combine(directory, AdapterFiles.WeightsFileName));
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt" }, reader.Metadata);
        Assert.Equal(expected.Keys.OrderBy(k => k, StringComparer.Ordinal), reader.Tensors.Select(t => t.Name).OrderBy(k => k, StringComparer.Ordinal));
        foreach (var info in reader.Tensors)
        {
            Assert.True(expected[info.Name].SequenceEqual(info.Shape), $"{info.Name}: [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", expected[info.Name])}]");
            Assert.Equal(SafetensorsDType.F32, info.DType);
        }
    }

    /// <summary>The keys of adapter_model.safetensors.</summary>
    public static List<string> Keys(string directory)
    {
        using var reader = SafetensorsFile.Open(Path.Combine(directory, AdapterFiles.WeightsFileName));
        return reader.Tensors.Select(t => t.Name).ToList();
    }

    /// <summary>Random values in every adapter parameter of <paramref name="model"/> (LoRA B and LoKr w1 start at zero).</summary>
    public static void RandomizeAdapters(nn.Module model, long seed)
    {
        using var generator = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var p in model.AdapterParameters())
        {
            using var values = randn(p.shape, generator: generator) * 0.2;
            p.copy_(values);
        }
    }

    /// <summary>A bitwise copy of every parameter and buffer, by state-dict name.</summary>
    public static Dictionary<string, float[]> Snapshot(nn.Module model)
    {
        var result = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var (name, p) in model.named_parameters()) result[name] = p.detach().contiguous().flatten().data<float>().ToArray();
        foreach (var (name, b) in model.named_buffers())
        {
            if (b.dtype == ScalarType.Float32) result["buffer:" + name] = b.contiguous().flatten().data<float>().ToArray();
        }
        return result;
    }

    /// <summary>Asserts the model still holds the snapshot's values bit for bit.</summary>
    public static void AssertUnchanged(Dictionary<string, float[]> before, nn.Module model)
    {
        var after = Snapshot(model);
        Assert.Equal(before.Keys.OrderBy(k => k, StringComparer.Ordinal), after.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (name, values) in before)
        {
            Assert.True(values.Select(BitConverter.SingleToInt32Bits).SequenceEqual(after[name].Select(BitConverter.SingleToInt32Bits)), $"{name} changed");
        }
    }

    /// <summary>Same shape and the same bits in every element.</summary>
    public static bool BitwiseEqual(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype) return false;
        var x = a.contiguous().flatten().data<float>().ToArray();
        var y = b.contiguous().flatten().data<float>().ToArray();
        return x.Select(BitConverter.SingleToInt32Bits).SequenceEqual(y.Select(BitConverter.SingleToInt32Bits));
    }

    /// <summary>Rewrites adapter_model.safetensors after <paramref name="edit"/> (metadata kept as PEFT writes it).</summary>
    public static void EditWeights(string directory, Action<Dictionary<string, Tensor>> edit)
    {
        string path = Path.Combine(directory, AdapterFiles.WeightsFileName);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (var reader = SafetensorsFile.Open(path))
        {
            foreach (var info in reader.Tensors) tensors[info.Name] = reader.ReadTensor(info.Name);
        }
        edit(tensors);
        SafetensorsFile.Write(path, tensors.ToList(), new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var t in tensors.Values) t.Dispose();
    }

    /// <summary>Rewrites adapter_config.json after <paramref name="edit"/>.</summary>
    public static void EditConfig(string directory, Action<JsonObject> edit)
    {
        string path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(config);
        File.WriteAllText(path, config.ToJsonString());
    }

    /// <summary>Overwrites the 8-byte header length of adapter_model.safetensors with a value past the end of the file.</summary>
    public static void CorruptHeader(string directory)
    {
        string path = Path.Combine(directory, AdapterFiles.WeightsFileName);
        var bytes = File.ReadAllBytes(path);
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), (ulong)bytes.Length * 4);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>
    /// The three load failures every family is checked for (a tensor of another rank, a missing key, a corrupt header):
    /// each must name the problem and leave <paramref name="fresh"/> bit for bit as it was.
    /// </summary>
    public static void AssertLoadFailuresLeaveModelUnchanged(Func<nn.Module> create, string savedDirectory, string adapterName, string rankKey, string missingKey)
    {
        foreach (var problem in new[] { "rank", "missing", "header" })
        {
            string dir = Path.Combine(Path.GetDirectoryName(savedDirectory)!, $"broken-{problem}-{Guid.NewGuid():N}");
            CopyDirectory(savedDirectory, dir);
            switch (problem)
            {
                case "rank":
                    EditWeights(dir, t =>
                    {
                        var shape = t[rankKey].shape.ToArray();
                        int rankAxis = rankKey.EndsWith("lora_B.weight", StringComparison.Ordinal) ? 1 : 0;
                        shape[rankAxis] += 1;
                        t[rankKey] = zeros(shape);
                    });
                    break;
                case "missing":
                    EditWeights(dir, t => t.Remove(missingKey));
                    break;
                default:
                    CorruptHeader(dir);
                    break;
            }

            using var model = create();
            var before = Snapshot(model);
            var names = model.AdapterNames().ToList();
            var error = Record.Exception(() => AdapterFiles.Load(model, dir, adapterName));
            Assert.NotNull(error);
            switch (problem)
            {
                case "rank":
                    var shapes = Assert.IsType<TensorMismatchException>(error);
                    Assert.Contains(shapes.ShapeMismatches, m => m.StartsWith(rankKey + ":", StringComparison.Ordinal));
                    break;
                case "missing":
                    var missing = Assert.IsType<TensorMismatchException>(error);
                    Assert.Equal(new[] { missingKey }, missing.MissingKeys);
                    break;
                default:
                    Assert.IsType<SafetensorsFormatException>(error);
                    Assert.Contains(AdapterFiles.WeightsFileName, error.Message, StringComparison.Ordinal);
                    break;
            }

            if (problem != "header") Assert.Contains("nothing was loaded", error.Message, StringComparison.Ordinal);
            AssertUnchanged(before, model);
            Assert.Equal(names, model.AdapterNames());
        }
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }
}
