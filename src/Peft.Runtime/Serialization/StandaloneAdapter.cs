using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// Builds one module's adapter from an adapter file's tensors, outside any model: the method's own adapter class with the
/// file's values, so file-level tools (<c>peft merge</c>, <c>peft inspect</c>) run exactly the per-method math a model runs
/// (<see cref="IMergeableAdapter.MergeInto"/>, <see cref="PeftAdapterOptions.Describe"/>).
/// </summary>
public static class StandaloneAdapter
{
    /// <summary>The adapter name standalone adapters get.</summary>
    public const string Name = "file";

    /// <summary>
    /// Creates the adapter the config gives <paramref name="modulePath"/> for <paramref name="layer"/> and copies
    /// <paramref name="tensors"/> into it. Every tensor the adapter has must be given with its shape, and no other.
    /// </summary>
    /// <param name="method">The config's method.</param>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">The adapted module's path.</param>
    /// <param name="layer">The base layer (kind, sizes, dtype the math runs in).</param>
    /// <param name="tensors">The module's tensors by PEFT name relative to the module (<c>lora_A.weight</c>).</param>
    /// <param name="source">Names the weights file in messages.</param>
    /// <param name="shared">The adapter's model-level tensors (<see cref="SharedTensors"/>), for methods that have them.</param>
    /// <param name="initializeFrom">The base parameters the adapter will be merged into: an adapter whose initialisation reads
    /// the base (<see cref="IBaseInitializedAdapter"/>) is initialised from them before the file's tensors are copied, so one that
    /// rewrites the base (PiSSA, OLoRA) leaves its residual in them, as a model's load does. Null when nothing is merged
    /// (<c>peft inspect</c>).</param>
    /// <returns>The adapter; the caller disposes it.</returns>
    /// <exception cref="AdapterFormatException">The config's options do not fit the layer, tensors are missing, unexpected or
    /// mis-shaped, or the shared tensors are missing or too small for the layer.</exception>
    public static PeftAdapter FromTensors(PeftMethod method, AdapterConfig config, string modulePath, PeftLayerInfo layer,
        IReadOnlyDictionary<string, Tensor> tensors, string source, SharedAdapterTensors? shared = null, LayerParameters? initializeFrom = null)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        var options = method.ReadOptions(config, modulePath);
        PeftAdapter adapter;
        try
        {
            options.Validate(Name, layer);
            adapter = options.CreateAdapter(Name, layer);
        }
        catch (PeftConfigurationException ex)
        {
            throw new AdapterFormatException($"{config.Source}: the settings for '{modulePath}' do not fit its base layer ({layer.Kind}, {layer.InFeatures} -> {layer.OutFeatures}): {ex.Message}", ex);
        }

        try
        {
            var expected = adapter.PeftTensors().ToList();
            var missing = expected.Where(e => !tensors.ContainsKey(e.PeftName)).Select(e => e.PeftName).ToList();
            var unexpected = tensors.Keys.Where(k => expected.All(e => e.PeftName != k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
            var mismatched = expected.Where(e => tensors.TryGetValue(e.PeftName, out var t) && !t.shape.SequenceEqual(e.Parameter.shape))
                .Select(e => $"{e.PeftName} is [{string.Join(", ", tensors[e.PeftName].shape)}], expected [{string.Join(", ", e.Parameter.shape)}]")
                .ToList();
            if (missing.Count > 0 || unexpected.Count > 0 || mismatched.Count > 0)
            {
                var problems = new List<string>();
                if (missing.Count > 0) problems.Add("missing " + string.Join(", ", missing));
                if (unexpected.Count > 0) problems.Add("unexpected " + string.Join(", ", unexpected));
                problems.AddRange(mismatched);
                throw new AdapterFormatException(
                    $"{source}: module '{modulePath}' does not hold the tensors of its {method.Name} adapter ({string.Join("; ", problems)}); " +
                    $"{config.Source} gives it {Describe(options)}.");
            }

            using (no_grad())
            {
                if (initializeFrom is not null && adapter is IBaseInitializedAdapter fromBase) fromBase.InitializeFromBase(initializeFrom);
                foreach (var (name, parameter) in expected)
                {
                    using var converted = tensors[name].to(parameter.dtype, parameter.device);
                    parameter.copy_(converted);
                }
            }

            if (adapter is ISharedTensorAdapter needs)
            {
                if (shared is null) throw new AdapterFormatException($"{source}: module '{modulePath}' needs the {method.Name} adapter's shared tensors ({string.Join(", ", method.SharedTensorNames)}), and none were given.");
                if (needs.Misfit(shared) is { } why) throw new AdapterFormatException($"{source}: module '{modulePath}' does not fit the adapter's shared tensors: {why}.");
                needs.Bind(shared);
            }

            return adapter;
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The model-level tensors of a file's adapter (<see cref="PeftMethod.SharedTensorNames"/>): the file's own when it holds
    /// them all, otherwise (PEFT's <c>save_projection</c> false) generated by the method from the config and every adapted
    /// layer, as a model's load does. Null for methods without shared tensors.
    /// </summary>
    /// <param name="method">The config's method.</param>
    /// <param name="config">The config.</param>
    /// <param name="fileTensors">The shared tensors the file holds, by PEFT name (<c>vera_A</c>); the set takes them over.</param>
    /// <param name="layers">Every adapted module of the file with its base layer.</param>
    /// <param name="source">Names the weights file in messages.</param>
    /// <returns>The set, or null.</returns>
    /// <exception cref="AdapterFormatException">The file holds only some of them, or the config's settings cannot create them.</exception>
    public static SharedAdapterTensors? SharedTensors(PeftMethod method, AdapterConfig config, IReadOnlyDictionary<string, Tensor> fileTensors,
        IReadOnlyList<(string ModulePath, PeftLayerInfo Layer)> layers, string source)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(fileTensors);
        ArgumentNullException.ThrowIfNull(layers);
        var names = method.SharedTensorNames;
        if (names.Count == 0 || layers.Count == 0) return null;
        var present = names.Where(fileTensors.ContainsKey).ToList();
        if (present.Count == names.Count) return new SharedAdapterTensors(names.Select(n => (n, fileTensors[n])), persistent: true, method.TrainableSharedTensorNames);
        if (present.Count > 0)
            throw new AdapterFormatException($"{source}: holds {string.Join(", ", present.Select(n => SharedAdapterTensors.KeyPrefix + n))} but not {string.Join(", ", names.Except(present).Select(n => SharedAdapterTensors.KeyPrefix + n))}.");
        try
        {
            return method.CreateSharedTensors(Name, layers.Select(l => (method.ReadOptions(config, l.ModulePath), l.Layer)).ToList());
        }
        catch (PeftConfigurationException ex)
        {
            throw new AdapterFormatException($"{config.Source}: the {method.Name} adapter's shared tensors cannot be generated: {ex.Message}", ex);
        }
    }

    private static string Describe(PeftAdapterOptions options)
        => string.Join(", ", options.Describe().Select(d => $"{d.Name} {d.Value}"));
}
