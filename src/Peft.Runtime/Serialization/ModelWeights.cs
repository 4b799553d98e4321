using System.Globalization;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// Saves and loads a model's base weights (parameters and buffers, adapters excluded) as one safetensors file keyed
/// by the module's state-dict names (<c>h.0.attn.q_proj.weight</c>): wrapping a layer with adapters does not change
/// its base keys, so the same file loads into the adapted and the plain model.
/// </summary>
public static class ModelWeights
{
    /// <summary>
    /// Writes the base weights of <paramref name="model"/> to <paramref name="path"/> (atomically). The weights are
    /// written as they are: while adapters are merged, that is the merged model, and the file's metadata records the
    /// merged adapters (<see cref="MergedAdapterMetadata"/>: those merged now and those the loaded base weights already
    /// held), so loading one of them again onto these weights is refused.
    /// </summary>
    public static void Save(nn.Module model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        var tensors = BaseTensors(model).Select(t => new KeyValuePair<string, Tensor>(t.Name, t.Tensor.detach())).ToList();
        try
        {
            string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir is not null) Directory.CreateDirectory(dir);
            var metadata = MergedAdapterMetadata.WithRecords(new Dictionary<string, string> { ["format"] = "pt" }, MergedAdapterMetadata.Of(model));
            SafetensorsFile.Write(path, tensors, metadata);
        }
        finally
        {
            foreach (var pair in tensors) pair.Value.Dispose();
        }
    }

    /// <summary>
    /// Loads base weights saved by <see cref="Save"/> (or any safetensors file with matching state-dict names).
    /// Every key and shape is checked before anything is copied; a mismatch lists all problems by name and leaves
    /// the model unchanged. The model then remembers the adapters the file records as merged into these weights
    /// (<see cref="MergedAdapterMetadata"/>), and <see cref="AdapterFiles.Load"/> refuses to load one of them on top.
    /// </summary>
    /// <exception cref="TensorMismatchException">Missing, unexpected or mis-shaped tensors (all listed by name).</exception>
    /// <exception cref="SafetensorsFormatException">The file is malformed, or a floating-point tensor holds NaN or
    /// infinite values (named in the message); nothing was loaded.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidOperationException">An adapter is merged into the base weights (unmerge first).</exception>
    public static void Load(nn.Module model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        var merged = model.AdaptedLayers().Where(l => l.Layer.IsMerged).Select(l => l.Path).ToList();
        if (merged.Count > 0)
        {
            throw new InvalidOperationException(
                $"Adapters are merged into the base weights of {string.Join(", ", merged)}; loading base weights now would make a later Unmerge() subtract the update from the new weights. Call model.Unmerge() first; nothing was loaded.");
        }

        using var reader = SafetensorsFile.Open(path);
        var mergedAdapters = MergedAdapterMetadata.Read(reader);
        var expected = BaseTensors(model).ToList();
        var expectedNames = new HashSet<string>(expected.Select(e => e.Name), StringComparer.Ordinal);
        var missing = expected.Where(e => !reader.Contains(e.Name)).Select(e => e.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var unexpected = reader.Tensors.Where(t => !expectedNames.Contains(t.Name)).Select(t => t.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var mismatched = expected
            .Where(e => reader.Contains(e.Name) && !reader.GetInfo(e.Name).Shape.SequenceEqual(e.Tensor.shape))
            .Select(e => $"{e.Name}: file [{string.Join(", ", reader.GetInfo(e.Name).Shape)}], model [{string.Join(", ", e.Tensor.shape)}]")
            .ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || mismatched.Count > 0)
        {
            var message = new StringBuilder();
            message.Append(CultureInfo.InvariantCulture, $"Weights {path} do not fit the model; nothing was loaded.");
            if (missing.Count > 0) message.Append("\n  missing keys: ").AppendJoin(", ", missing);
            if (unexpected.Count > 0) message.Append("\n  unexpected keys: ").AppendJoin(", ", unexpected);
            if (mismatched.Count > 0) message.Append("\n  shape mismatches: ").AppendJoin("; ", mismatched);
            throw new TensorMismatchException(reader.Path, message.ToString(), missing, unexpected, mismatched);
        }

        // Every value is read and checked before the first copy, so a NaN or infinite weight leaves the model unchanged.
        var values = new List<(Tensor Target, Tensor Value)>();
        try
        {
            foreach (var (name, target) in expected)
            {
                using var value = reader.ReadTensor(name);
                var converted = value.to(target.dtype, target.device);
                values.Add((target, converted));
                if (converted.is_floating_point())
                {
                    using var finite = isfinite(converted);
                    using var all = finite.all();
                    if (!all.item<bool>())
                    {
                        throw new SafetensorsFormatException(reader.Path, name, $"tensor '{name}' holds NaN or infinite values; refusing to load it (nothing was loaded)");
                    }
                }
            }

            using var _ = no_grad();
            foreach (var (target, value) in values) target.copy_(value);
            MergedAdapterMetadata.Remember(model, reader.Path, mergedAdapters);
        }
        finally
        {
            foreach (var (_, value) in values) value.Dispose();
        }
    }

    private static IEnumerable<(string Name, Tensor Tensor)> BaseTensors(nn.Module model)
    {
        var adapterParameters = new HashSet<object>(model.AdapterParameters(), ReferenceEqualityComparer.Instance);
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (!adapterParameters.Contains(parameter)) yield return (name, parameter);
        }
        foreach (var (name, buffer) in model.named_buffers())
        {
            yield return (name, buffer);
        }
    }
}
