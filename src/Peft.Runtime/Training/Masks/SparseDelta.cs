using System.Globalization;
using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Training.Masks;

/// <summary>
/// The trained entries of masked base weights (<see cref="ParameterMasks"/>, SPT, ID³) as a sparse delta: per weight, the
/// row-major positions of the trained entries and <c>trained - base</c> at them. Applying it adds the values at the
/// positions (the merged model: the delta is the weights, nothing else runs), reverting subtracts them.
/// </summary>
/// <remarks>
/// <para><b>File.</b> Not a PEFT format (PEFT has no selective methods): a safetensors file with metadata
/// <c>format = peft-dotnet-sparse-delta</c>, <c>version = 1</c> and <c>{name}.shape</c> (the weight's shape, comma
/// separated), and per weight the tensors <c>{name}.indices</c> (int64 [n], ascending) and <c>{name}.values</c> ([n], the
/// weight's dtype). Loading checks every weight against the model (present, same shape and dtype, indices in range)
/// before changing anything.</para>
/// <para><b>Rounding.</b> <c>base + (trained - base)</c> is the trained value up to one rounding of the weight's dtype,
/// and reverting restores the base up to the same (exact where the delta is representable, as in float64).</para>
/// </remarks>
public sealed class SparseDelta : IDisposable
{
    /// <summary>The value of the <c>format</c> metadata field.</summary>
    public const string FormatName = "peft-dotnet-sparse-delta";

    private readonly List<(string Name, long[] Shape, Tensor Indices, Tensor Values)> _weights;

    private SparseDelta(List<(string Name, long[] Shape, Tensor Indices, Tensor Values)> weights) => _weights = weights;

    /// <summary>The weights the delta changes, in order.</summary>
    public IReadOnlyList<string> Names => _weights.Select(w => w.Name).ToArray();

    /// <summary>How many entries the delta changes, over all weights.</summary>
    public long Count => _weights.Sum(w => w.Indices.numel());

    /// <summary>The positions of weight <paramref name="name"/>'s changed entries (int64, ascending).</summary>
    /// <param name="name">A weight of the delta.</param>
    /// <returns>The live tensor.</returns>
    public Tensor IndicesOf(string name) => Get(name).Indices;

    /// <summary>The values added at <see cref="IndicesOf"/> (trained minus base).</summary>
    /// <param name="name">A weight of the delta.</param>
    /// <returns>The live tensor.</returns>
    public Tensor ValuesOf(string name) => Get(name).Values;

    /// <summary>Takes the delta of each weight at the entries its mask trains.</summary>
    /// <param name="weights">Per weight: its name, its trained values, its base values and its mask.</param>
    /// <returns>A new delta.</returns>
    public static SparseDelta Capture(IEnumerable<(string Name, Tensor Trained, Tensor Base, Tensor Mask)> weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var list = new List<(string, long[], Tensor, Tensor)>();
        using var _ = torch.no_grad();
        foreach (var (name, trained, baseValues, mask) in weights)
        {
            using var scope = torch.NewDisposeScope();
            var indices = mask.flatten().nonzero().flatten().cpu();
            var values = (trained.detach().flatten().cpu() - baseValues.flatten().cpu()).index_select(0, indices);
            list.Add((name, trained.shape, indices.DetachFromDisposeScope(), values.DetachFromDisposeScope()));
        }

        return new SparseDelta(list);
    }

    /// <summary>Writes the delta (format in the class remarks).</summary>
    /// <param name="path">The file to write (conventionally <c>sparse_delta.safetensors</c>).</param>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = FormatName, ["version"] = "1" };
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (name, shape, indices, values) in _weights)
        {
            metadata[name + ".shape"] = string.Join(",", shape);
            tensors.Add(new(name + ".indices", indices));
            tensors.Add(new(name + ".values", values));
        }

        SafetensorsFile.Write(path, tensors, metadata);
    }

    /// <summary>Reads a delta written by <see cref="Save"/>.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The delta; check it against a model with <see cref="ApplyTo(nn.Module)"/>.</returns>
    /// <exception cref="SafetensorsFormatException">The file is not a sparse delta, or a weight's tensors are missing or inconsistent (the message names the file and the weight).</exception>
    public static SparseDelta Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var reader = SafetensorsFile.Open(path);
        if (!reader.Metadata.TryGetValue("format", out var format) || format != FormatName)
        {
            throw new SafetensorsFormatException(path, "format", $"this is not a sparse delta (metadata format must be '{FormatName}'); a PEFT adapter is loaded with LoadAdapter, model weights with LoadWeights.");
        }

        var list = new List<(string, long[], Tensor, Tensor)>();
        foreach (var (key, text) in reader.Metadata.Where(m => m.Key.EndsWith(".shape", StringComparison.Ordinal)).OrderBy(m => m.Key, StringComparer.Ordinal))
        {
            string name = key[..^".shape".Length];
            long[] shape = text.Split(',').Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
            if (!reader.Contains(name + ".indices") || !reader.Contains(name + ".values"))
            {
                throw new SafetensorsFormatException(path, name, $"the weight '{name}' has a shape but no {name}.indices or {name}.values tensor.");
            }

            var indices = reader.ReadTensor(name + ".indices");
            var values = reader.ReadTensor(name + ".values");
            if (indices.dtype != ScalarType.Int64 || indices.dim() != 1 || !values.shape.SequenceEqual(indices.shape))
            {
                throw new SafetensorsFormatException(path, name, $"'{name}' needs int64 indices [n] and values [n]; it has {indices.dtype} [{string.Join(", ", indices.shape)}] and [{string.Join(", ", values.shape)}].");
            }

            list.Add((name, shape, indices, values));
        }

        return new SparseDelta(list);
    }

    /// <summary>Adds the delta to <paramref name="model"/>'s weights (the trained model); everything is checked first.</summary>
    /// <param name="model">The base model.</param>
    /// <exception cref="ArgumentException">A weight is missing from the model or has another shape or dtype, or an index is out of range; nothing was changed.</exception>
    public void ApplyTo(nn.Module model) => Add(model, 1.0);

    /// <summary>Subtracts the delta from <paramref name="model"/>'s weights (back to the base); everything is checked first.</summary>
    /// <param name="model">A model the delta was applied to.</param>
    /// <exception cref="ArgumentException">As for <see cref="ApplyTo(nn.Module)"/>.</exception>
    public void RevertFrom(nn.Module model) => Add(model, -1.0);

    /// <summary>Frees the tensors.</summary>
    public void Dispose()
    {
        foreach (var (_, _, indices, values) in _weights)
        {
            indices.Dispose();
            values.Dispose();
        }
    }

    /// <summary>Adds the delta to weights held by name (a state dict read from a file: <c>peft merge</c>); everything is checked first.</summary>
    /// <param name="weights">The base tensors by name; those the delta changes are changed in place.</param>
    /// <exception cref="ArgumentException">As for <see cref="ApplyTo(nn.Module)"/>.</exception>
    public void ApplyTo(IReadOnlyDictionary<string, Tensor> weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        Add(weights, 1.0, "the weights");
    }

    private void Add(nn.Module model, double sign)
    {
        ArgumentNullException.ThrowIfNull(model);
        var parameters = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, parameter) in model.named_parameters())
        {
            parameters.TryAdd(name, parameter);
        }

        Add(parameters, sign, "the model");
    }

    private void Add(IReadOnlyDictionary<string, Tensor> parameters, double sign, string what)
    {

        foreach (var (name, shape, indices, values) in _weights)
        {
            if (!parameters.TryGetValue(name, out var weight))
            {
                throw new ArgumentException($"The sparse delta changes '{name}', which is not in {what}; load it onto the base it was trained from.", nameof(parameters));
            }

            if (!weight.shape.SequenceEqual(shape) || weight.dtype != values.dtype)
            {
                throw new ArgumentException($"The sparse delta's '{name}' is {values.dtype} [{string.Join(", ", shape)}]; its base tensor in {what} is {weight.dtype} [{string.Join(", ", weight.shape)}].", nameof(parameters));
            }

            if (indices.numel() > 0 && (indices.min().ToInt64() < 0 || indices.max().ToInt64() >= weight.numel()))
            {
                throw new ArgumentException($"The sparse delta's '{name}' has an index outside [0, {weight.numel()}).", nameof(parameters));
            }
        }

        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        foreach (var (name, _, indices, values) in _weights)
        {
            var weight = parameters[name];
            var flat = weight.view(-1);
            flat.index_add_(0, indices.to(weight.device), values.to(weight.device), alpha: sign);
        }
    }

    private (string Name, long[] Shape, Tensor Indices, Tensor Values) Get(string name) =>
        _weights.FirstOrDefault(w => w.Name == name) is { Name: not null } found
            ? found
            : throw new ArgumentException($"The sparse delta does not change '{name}'.", nameof(name));
}
