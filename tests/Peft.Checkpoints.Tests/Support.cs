using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Checkpoints.Tests;

/// <summary>A temporary directory removed on dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "peft-ckpt-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Best effort.
        }
    }
}

internal static class Support
{
    public static readonly long[] Ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8];

    /// <summary>The base state dict (adapter parameters excluded) as raw bytes per name: a bitwise snapshot.</summary>
    public static Dictionary<string, byte[]> Snapshot(nn.Module model)
    {
        var adapters = new HashSet<object>(model.AdapterParameters(), ReferenceEqualityComparer.Instance);
        var result = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (name, p) in model.named_parameters())
        {
            result.Add(adapters.Contains(p) ? "adapter:" + name : name, Bytes(p));
        }
        foreach (var (name, b) in model.named_buffers())
        {
            result.Add("buffer:" + name, Bytes(b));
        }
        return result;
    }

    public static byte[] Bytes(Tensor t)
    {
        using var c = t.detach().cpu().contiguous();
        return c.bytes.ToArray();
    }

    public static void AssertUnchanged(Dictionary<string, byte[]> before, nn.Module model)
    {
        var after = Snapshot(model);
        Assert.Equal(before.Keys.OrderBy(k => k, StringComparer.Ordinal), after.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (name, bytes) in before)
        {
            Assert.True(bytes.AsSpan().SequenceEqual(after[name]), $"{name} changed");
        }
    }

    public static Tensor Logits(nn.Module<Tensor, Tensor> model)
    {
        using var _ = no_grad();
        using var ids = tensor(Ids, dtype: int64).view(1, -1);
        return model.call(ids);
    }

    public static Dictionary<string, Tensor> Params(nn.Module model)
        => model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter, StringComparer.Ordinal);

    /// <summary>Rewrites a safetensors file with <paramref name="edit"/> applied to its (name, tensor) list.</summary>
    public static void Rewrite(string file, Func<List<KeyValuePair<string, Tensor>>, List<KeyValuePair<string, Tensor>>> edit)
    {
        List<KeyValuePair<string, Tensor>> tensors;
        using (var reader = SafetensorsFile.Open(file))
        {
            tensors = reader.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, reader.ReadTensor(t.Name))).ToList();
        }
        var edited = edit(tensors);
        SafetensorsFile.Write(file, edited, new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var t in new HashSet<Tensor>(tensors.Concat(edited).Select(p => p.Value), ReferenceEqualityComparer.Instance)) t.Dispose();
    }

    public static JsonObject ReadJson(string path) => (JsonObject)JsonNode.Parse(File.ReadAllText(path))!;

    public static string[] HeaderNames(string file)
    {
        using var reader = SafetensorsFile.Open(file);
        return reader.Tensors.Select(t => t.Name).ToArray();
    }
}
