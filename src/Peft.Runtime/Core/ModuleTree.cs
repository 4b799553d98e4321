using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace Peft;

/// <summary>One registered module of a model, as <see cref="ModuleTree.Walk"/> finds it.</summary>
/// <param name="Path">The dotted path from the root ("" for the root itself), the name PEFT matches targets against.</param>
/// <param name="Name">The registered name under its parent ("" for the root).</param>
/// <param name="Module">The module.</param>
/// <param name="Parent">The parent module, or null for the root.</param>
/// <param name="Frozen">Under a <see cref="FreezeAttribute"/> member or class, or a module frozen at run time with
/// <see cref="PeftModel.Freeze"/> (inherited down the tree).</param>
/// <param name="Trainable">Under a <see cref="TrainableAttribute"/> member (inherited down the tree).</param>
public sealed record ModuleNode(string Path, string Name, nn.Module Module, nn.Module? Parent, bool Frozen, bool Trainable)
{
    /// <summary>The module's wrapper, when it is an adapted layer.</summary>
    public AdaptedLayer? Layer => Module as AdaptedLayer;

    /// <summary>The module as an adapter inserted at a block's sub-layer (<see cref="ITransformerBlock"/>), or null.</summary>
    public InsertedAdapter? Inserted => Module as InsertedAdapter;
}

/// <summary>
/// The one module-tree walker: every registered module of a model in registration order, with the
/// <see cref="FreezeAttribute"/>/<see cref="TrainableAttribute"/> marks of the generated descriptors (and the run-time freeze
/// marks of <see cref="PeftModel.Freeze"/>) inherited down the tree.
/// It never descends into an <see cref="AdaptedLayer"/> (its children are adapters, not part of the user's model) nor into an
/// <see cref="InsertedAdapter"/> (its layers are the adapter's, not targets for other methods). Found
/// through <c>named_children()</c>, never by reflection. Trainability, merging, targeting and the adapter files use it.
/// </summary>
public static class ModuleTree
{
    private static readonly ConditionalWeakTable<nn.Module, object> s_frozen = new();
    private static readonly object s_mark = new();

    /// <summary>Walks <paramref name="root"/> depth-first in registration order, the root first.</summary>
    /// <param name="root">The model.</param>
    /// <returns>The nodes.</returns>
    public static IReadOnlyList<ModuleNode> Walk(nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var nodes = new List<ModuleNode>();
        bool rootFrozen = ((root as IPeftModule)?.PeftDescriptor.FrozenClass ?? false) || IsMarkedFrozen(root);
        Visit(new ModuleNode(string.Empty, string.Empty, root, null, rootFrozen, false), nodes);
        return nodes;
    }

    /// <summary>The adapted layers of the tree with their paths, in registration order.</summary>
    /// <param name="root">The model.</param>
    /// <returns>(path, layer) pairs.</returns>
    public static IEnumerable<(string Path, AdaptedLayer Layer)> Layers(nn.Module root)
    {
        foreach (var node in Walk(root))
        {
            if (node.Layer is { } layer)
            {
                yield return (node.Path, layer);
            }
        }
    }

    /// <summary>Marks <paramref name="module"/> frozen as <see cref="FreezeAttribute"/> does, or clears the mark.</summary>
    internal static void SetFrozenMark(nn.Module module, bool frozen)
    {
        if (frozen)
        {
            s_frozen.AddOrUpdate(module, s_mark);
        }
        else
        {
            s_frozen.Remove(module);
        }
    }

    /// <summary>Whether <see cref="SetFrozenMark"/> marked the module.</summary>
    internal static bool IsMarkedFrozen(nn.Module module) => s_frozen.TryGetValue(module, out _);

    private static void Visit(ModuleNode node, List<ModuleNode> nodes)
    {
        nodes.Add(node);
        if (node.Module is AdaptedLayer or InsertedAdapter)
        {
            return;
        }

        var descriptor = (node.Module as IPeftModule)?.PeftDescriptor;
        foreach (var (name, child) in node.Module.named_children())
        {
            bool frozen = node.Frozen || (descriptor?.IsFrozenMember(name) ?? false) || ((child as IPeftModule)?.PeftDescriptor.FrozenClass ?? false) || IsMarkedFrozen(child);
            bool trainable = node.Trainable || (descriptor?.IsTrainableMember(name) ?? false);
            string path = node.Path.Length == 0 ? name : node.Path + "." + name;
            Visit(new ModuleNode(path, name, child, node.Module, frozen, trainable), nodes);
        }
    }
}
