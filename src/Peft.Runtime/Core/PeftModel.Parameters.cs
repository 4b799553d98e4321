using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

public static partial class PeftModel
{
    /// <summary>
    /// Every adapter parameter of the tree (every method, active or not), each once, in registration order, then the
    /// adapters' trainable shared tensors (<see cref="SharedParameters"/>, which <c>parameters()</c> does not hold).
    /// Everything else in <c>parameters()</c> is the base model.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <returns>The adapter parameters.</returns>
    public static IReadOnlyList<Parameter> AdapterParameters(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        var result = new List<Parameter>();
        foreach (var (_, layer) in ModuleTree.Layers(root))
        {
            foreach (var adapter in layer.Adapters)
            {
                foreach (var p in adapter.parameters())
                {
                    if (seen.Add(p)) result.Add(p);
                }
            }
        }

        foreach (var (_, p) in root.SharedParameters())
        {
            if (seen.Add(p)) result.Add(p);
        }

        return result;
    }

    /// <summary>
    /// The trainable shared tensors of the tree's adapters (<see cref="SharedAdapterTensors.Parameters"/>, e.g. VB-LoRA's
    /// vector bank), each once, named as PEFT's in-memory state dict names them: <c>base_model.{name}.{adapter}</c>. They are
    /// bound to the layers (<see cref="BindSharedTensors"/>) or to inserted adapters that implement
    /// <see cref="ISharedTensorAdapter"/> (Compacter's <c>phm_rule</c>, bound when the adapters are inserted), and registered
    /// in no module. Layers' sets come first, then inserted adapters' sets, in registration order.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <returns>(name, parameter) pairs, by adapter name in first-layer order.</returns>
    public static IReadOnlyList<(string Name, Parameter Parameter)> SharedParameters(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var seen = new HashSet<SharedAdapterTensors>(ReferenceEqualityComparer.Instance);
        var result = new List<(string, Parameter)>();
        foreach (var (_, layer) in ModuleTree.Layers(root))
        {
            foreach (var adapter in layer.Adapters)
            {
                if (adapter is not ISharedTensorAdapter { SharedTensors: { } set } || !seen.Add(set)) continue;
                foreach (var (name, p) in set.Parameters)
                {
                    result.Add(($"{SharedAdapterTensors.KeyPrefix}{name}.{adapter.AdapterName}", p));
                }
            }
        }

        foreach (var (_, inserted) in root.InsertedAdapters())
        {
            if (inserted is not ISharedTensorAdapter { SharedTensors: { } set } || !seen.Add(set)) continue;
            foreach (var (name, p) in set.Parameters)
            {
                result.Add(($"{SharedAdapterTensors.KeyPrefix}{name}.{inserted.AdapterName}", p));
            }
        }

        return result;
    }
}
