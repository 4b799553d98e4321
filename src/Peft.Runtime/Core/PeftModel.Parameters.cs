using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

public static partial class PeftModel
{
    /// <summary>
    /// Every adapter parameter of the tree (every method, active or not), each once, in registration order. Everything
    /// else in <c>parameters()</c> is the base model.
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
        return result;
    }
}
