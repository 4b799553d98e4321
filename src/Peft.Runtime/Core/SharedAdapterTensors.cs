using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Tensors that every layer of one named adapter shares, sized for the whole model: frozen ones (VeRA's random projections
/// <c>vera_A</c> and <c>vera_B</c>, sized by the largest targeted layer) and trainable ones (VB-LoRA's vector bank). PEFT
/// keeps them on the model, not on a layer, and its file stores them under model-level keys <c>base_model.{name}</c> when
/// they are persistent.
/// </summary>
/// <remarks>
/// <para>They are registered in no module, so no module's state dict or <c>parameters()</c> holds them, and a module-level
/// move cannot split them into one copy per layer. A set is created once per adapter name by its method
/// (<see cref="PeftMethod.CreateSharedTensors"/>) when the model is complete, and bound to every layer of that adapter
/// (<see cref="ISharedTensorAdapter"/>). Moving or converting the model moves them once: <see cref="To"/> returns one
/// converted set that all the layers then share.</para>
/// <para>Frozen tensors never require gradients. A trainable tensor (<see cref="IsTrainable"/>) is a <see cref="Parameter"/>
/// that the model-level operations treat as one parameter of the adapter, each once: <c>TrainableParameters()</c> (so it
/// reaches the optimizer), the trainability rule (it trains while the adapter is live on any of its layers),
/// <c>GetTrainableSummary()</c>, <c>AdapterParameters()</c> and checkpoints (<see cref="PeftModel.SharedParameters"/>
/// names them <c>base_model.{name}.{adapter}</c>, PEFT's in-memory key). A move converts it to a new parameter with the same
/// <c>requires_grad</c>, as a module move does; create the optimizer after moving the model.</para>
/// </remarks>
public sealed class SharedAdapterTensors
{
    private readonly (string Name, Tensor Tensor)[] _tensors;
    private readonly HashSet<string> _trainable;
    private readonly Family _family;

    /// <summary>Creates a set from tensors it takes over (detached from any dispose scope, gradients off).</summary>
    /// <param name="tensors">PEFT's model-level names (without <c>base_model.</c>) and the tensors, in file order.</param>
    /// <param name="persistent">Whether adapter files store them (PEFT's <c>persistent</c> buffers, e.g. VeRA's
    /// <c>save_projection</c>); otherwise a load regenerates them.</param>
    public SharedAdapterTensors(IEnumerable<(string Name, Tensor Tensor)> tensors, bool persistent)
        : this(tensors, persistent, Array.Empty<string>())
    {
    }

    /// <summary>Creates a set in which the tensors named in <paramref name="trainable"/> are trainable parameters (each
    /// wrapped as a <see cref="Parameter"/> with gradients on, sharing the given tensor's storage, unless it already is one)
    /// and the others frozen.</summary>
    /// <param name="tensors">PEFT's model-level names (without <c>base_model.</c>) and the tensors, in file order.</param>
    /// <param name="persistent">Whether adapter files store them.</param>
    /// <param name="trainable">The names of the trainable ones (e.g. VB-LoRA's <c>vblora_vector_bank</c>).</param>
    /// <exception cref="ArgumentException">A trainable name is not among the tensors, or a trainable tensor is not floating
    /// point.</exception>
    public SharedAdapterTensors(IEnumerable<(string Name, Tensor Tensor)> tensors, bool persistent, IEnumerable<string> trainable)
        : this(tensors, persistent, new HashSet<string>(trainable ?? throw new ArgumentNullException(nameof(trainable)), StringComparer.Ordinal), null, new Family())
    {
    }

    private SharedAdapterTensors(IEnumerable<(string Name, Tensor Tensor)> tensors, bool persistent, HashSet<string> trainable, bool[]? requiresGrad, Family family)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        _trainable = trainable;
        var list = tensors.ToArray();
        foreach (var name in trainable)
        {
            if (!list.Any(t => t.Name == name)) throw new ArgumentException($"The trainable shared tensor '{name}' is not in the set.", nameof(trainable));
        }

        _tensors = new (string, Tensor)[list.Length];
        for (int i = 0; i < list.Length; i++)
        {
            var (name, tensor) = list[i];
            tensor.DetachFromDisposeScope();
            if (trainable.Contains(name))
            {
                if (!tensor.is_floating_point()) throw new ArgumentException($"The trainable shared tensor '{name}' must be floating point, it is {tensor.dtype}.", nameof(trainable));
                // A new handle on the same storage: the given tensor stays valid for its owner (e.g. a file's tensor map).
                var parameter = tensor as Parameter ?? new Parameter(tensor.detach(), requires_grad: true);
                parameter.DetachFromDisposeScope();
                if (requiresGrad is not null) parameter.requires_grad = requiresGrad[i];
                _tensors[i] = (name, parameter);
            }
            else
            {
                tensor.requires_grad = false;
                _tensors[i] = (name, tensor);
            }
        }

        Persistent = persistent;
        _family = family;
        _family.Current = this;
    }

    /// <summary>The file key prefix of model-level tensors (PEFT's <c>PeftModel.base_model</c>).</summary>
    public const string KeyPrefix = "base_model.";

    /// <summary>Whether adapter files store the tensors (under <see cref="KeyPrefix"/> + name).</summary>
    public bool Persistent { get; }

    /// <summary>The tensors by PEFT name, in file order.</summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> Tensors => _tensors;

    /// <summary>The trainable tensors (parameters) by PEFT name, in file order; empty for a frozen set such as VeRA's.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> Parameters
        => _tensors.Where(t => _trainable.Contains(t.Name)).Select(t => (t.Name, (Parameter)t.Tensor));

    /// <summary>Whether the tensor named <paramref name="name"/> is trainable.</summary>
    /// <param name="name">A PEFT name.</param>
    /// <returns>True for a trainable tensor.</returns>
    public bool IsTrainable(string name) => _trainable.Contains(name);

    /// <summary>The tensor named <paramref name="name"/>.</summary>
    /// <param name="name">A PEFT name such as <c>vera_A</c>.</param>
    /// <returns>The tensor.</returns>
    /// <exception cref="KeyNotFoundException">The set has no such tensor.</exception>
    public Tensor this[string name]
        => _tensors.FirstOrDefault(t => t.Name == name).Tensor ?? throw new KeyNotFoundException($"No shared tensor '{name}'.");

    /// <summary>
    /// This set converted to <paramref name="dtype"/> and moved to <paramref name="device"/> (either may be null: kept). The
    /// first call for a new target converts; later calls for the same target (the other layers of the adapter) return that
    /// same set, so the layers keep sharing one copy.
    /// </summary>
    /// <param name="dtype">The element type, or null.</param>
    /// <param name="device">The device, or null.</param>
    /// <returns>The shared set on the target.</returns>
    public SharedAdapterTensors To(ScalarType? dtype, Device? device)
    {
        var current = _family.Current;
        var first = current._tensors[0].Tensor;
        var targetType = dtype is { } d && first.is_floating_point() ? d : first.dtype;
        var targetDevice = device ?? first.device;
        if (first.dtype == targetType && first.device_type == targetDevice.type && (targetDevice.index < 0 || first.device_index == targetDevice.index))
        {
            return current;
        }

        Tensor Convert(string name, Tensor t)
        {
            if (!current._trainable.Contains(name)) return t.to(targetType, targetDevice);
            using var noGrad = torch.no_grad();
            using var data = t.detach();
            return data.to(targetType, targetDevice, copy: true);
        }

        var requiresGrad = current._tensors.Select(t => t.Tensor.requires_grad).ToArray();
        var converted = current._tensors.Select(t => (t.Name, Convert(t.Name, t.Tensor))).ToList();
        return new SharedAdapterTensors(converted, current.Persistent, current._trainable, requiresGrad, _family);
    }

    /// <summary>The most recently converted set of one family: what every layer moved to the same target shares.</summary>
    private sealed class Family
    {
        public SharedAdapterTensors Current { get; set; } = null!;
    }
}

/// <summary>
/// An adapter whose layers share model-level tensors, frozen or trainable (<see cref="SharedAdapterTensors"/>): it cannot compute
/// anything until they are bound, which happens once the model is complete (after <c>ApplyTargets</c>, and before any
/// model-level operation such as training, merging, saving or loading; <see cref="PeftModel.BindSharedTensors"/>).
/// </summary>
public interface ISharedTensorAdapter
{
    /// <summary>The bound tensors, or null before binding.</summary>
    SharedAdapterTensors? SharedTensors { get; }

    /// <summary>Whether <paramref name="tensors"/> are large enough for this layer (e.g. VeRA: <c>vera_A</c> has at least
    /// in_features columns).</summary>
    /// <param name="tensors">A candidate set.</param>
    /// <returns>Null when they fit, otherwise why not.</returns>
    string? Misfit(SharedAdapterTensors tensors);

    /// <summary>Binds the tensors (after <see cref="Misfit"/> said they fit).</summary>
    /// <param name="tensors">The set.</param>
    void Bind(SharedAdapterTensors tensors);
}

public static partial class PeftModel
{
    /// <summary>
    /// Creates and binds the shared tensors (<see cref="SharedAdapterTensors"/>) of every adapter whose layers need them:
    /// per adapter name, layers already bound keep their set, and the others are bound to it when it is large enough; a
    /// name with no set yet gets one from its method, sized from all its layers (so the same seed gives PEFT's tensors).
    /// Model-level operations call it; call it yourself only after declaring such adapters with attributes and before the
    /// first forward pass outside those operations.
    /// </summary>
    /// <param name="root">The complete model.</param>
    /// <exception cref="PeftConfigurationException">A layer added later needs larger shared tensors than the adapter already
    /// has (add all its layers at once), or the layers' options disagree on how to create them.</exception>
    public static void BindSharedTensors(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var groups = new Dictionary<string, List<(string Path, PeftAdapter Adapter, ISharedTensorAdapter Shared)>>(StringComparer.Ordinal);
        foreach (var (path, layer) in ModuleTree.Layers(root))
        {
            foreach (var adapter in layer.Adapters)
            {
                if (adapter is not ISharedTensorAdapter shared) continue;
                if (!groups.TryGetValue(adapter.AdapterName, out var list)) groups.Add(adapter.AdapterName, list = new());
                list.Add((path, adapter, shared));
            }
        }

        foreach (var (name, layers) in groups)
        {
            if (layers.All(l => l.Shared.SharedTensors is not null)) continue;
            var set = layers.Select(l => l.Shared.SharedTensors).FirstOrDefault(s => s is not null)
                ?? layers[0].Adapter.Method.CreateSharedTensors(name, layers.Select(l => (l.Adapter.Config, l.Adapter.Layer)).ToList());
            foreach (var (path, _, shared) in layers.Where(l => l.Shared.SharedTensors is null))
            {
                if (shared.Misfit(set) is { } why)
                {
                    throw new PeftConfigurationException(
                        $"Adapter '{name}' on '{path}' cannot use the adapter's shared tensors: {why}. They are sized once from the layers the adapter has " +
                        "when the model is first used; add all its layers at once (one ApplyTargets, or attributes only).", path, name);
                }
            }

            foreach (var (_, _, shared) in layers.Where(l => l.Shared.SharedTensors is null)) shared.Bind(set);
        }
    }
}
