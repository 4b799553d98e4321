using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Model-level PEFT operations on any TorchSharp module tree: trainability, parameter summaries, merging, adapter
/// selection and deletion, and prompt helpers. The tree is walked by <see cref="ModuleTree"/> (<c>named_children()</c>);
/// nothing is found by reflection.
/// </summary>
public static partial class PeftModel
{
    /// <summary>
    /// Sets <c>requires_grad</c> on every parameter of the tree by the PEFT trainability rule:
    /// <list type="bullet">
    /// <item>parameters of an adapter are trainable while that adapter is active and its layer's adapters are enabled
    /// (inactive adapters are frozen, as in PEFT), except the adapter's own <see cref="PeftAdapter.FrozenParameters"/>, which
    /// never train; an adapter inserted at a block's sub-layer (<see cref="InsertedAdapter"/>) trains while it is active;</item>
    /// <item>when the tree holds any adapter, every other parameter is frozen unless it lies under a member marked
    /// <see cref="TrainableAttribute"/>;</item>
    /// <item>a member marked <see cref="FreezeAttribute"/>, or a class marked with it, freezes its whole subtree,
    /// adapters included, even inside a <see cref="TrainableAttribute"/> subtree;</item>
    /// <item>when the tree holds no adapter, only the <see cref="FreezeAttribute"/> rule (freeze) and the
    /// <see cref="TrainableAttribute"/> rule (unfreeze) apply; other parameters keep their current setting;</item>
    /// <item>a trainable shared tensor of an adapter (<see cref="SharedAdapterTensors.Parameters"/>, e.g. VB-LoRA's vector
    /// bank, or Compacter's <c>phm_rule</c> shared by its inserted adapters) trains while the adapter is live on at least one
    /// of its layers (or an inserted adapter that holds it is active) outside a frozen subtree.</item>
    /// </list>
    /// Members are matched by registered name against each <see cref="IPeftModule.PeftDescriptor"/>. The operation
    /// is idempotent.
    /// </summary>
    /// <param name="root">The model (or subtree) to update.</param>
    public static void ApplyTrainability(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var nodes = ModuleTree.Walk(root);
        bool anyAdapters = nodes.Any(n => n.Layer is { Adapters.Count: > 0 } || n.Inserted is not null);
        var sharedLive = new Dictionary<SharedAdapterTensors, bool>(ReferenceEqualityComparer.Instance);
        foreach (var node in nodes)
        {
            if (node.Inserted is { } inserted)
            {
                foreach (var parameter in inserted.parameters())
                {
                    Set(parameter, !node.Frozen && inserted.Active);
                }

                if (inserted is ISharedTensorAdapter { SharedTensors: { } insertedSet })
                {
                    sharedLive[insertedSet] = (sharedLive.TryGetValue(insertedSet, out bool anyInserted) && anyInserted) || (!node.Frozen && inserted.Active);
                }

                continue;
            }

            var descriptor = (node.Module as IPeftModule)?.PeftDescriptor;
            foreach (var (name, parameter) in node.Module.named_parameters(recurse: false))
            {
                bool frozen = node.Frozen || (descriptor?.IsFrozenMember(name) ?? false);
                bool trainable = node.Trainable || (descriptor?.IsTrainableMember(name) ?? false);
                Set(parameter, frozen ? false : trainable ? true : anyAdapters ? false : null);
            }

            if (node.Layer is not { } layer)
            {
                continue;
            }

            foreach (var adapter in layer.Adapters)
            {
                bool live = !node.Frozen && layer.IsLive(adapter);
                var fixedTensors = new HashSet<Parameter>(adapter.FrozenParameters(), ReferenceEqualityComparer.Instance);
                foreach (var parameter in adapter.parameters())
                {
                    Set(parameter, live && !fixedTensors.Contains(parameter));
                }

                if (adapter is ISharedTensorAdapter { SharedTensors: { } set })
                {
                    sharedLive[set] = (sharedLive.TryGetValue(set, out bool any) && any) || live;
                }
            }
        }

        foreach (var (set, live) in sharedLive)
        {
            foreach (var (_, parameter) in set.Parameters)
            {
                Set(parameter, live);
            }
        }

        static void Set(Parameter parameter, bool? requiresGrad)
        {
            if (requiresGrad is bool wanted && parameter.requires_grad != wanted)
            {
                parameter.requires_grad = wanted;
            }
        }
    }

    /// <summary>Applies <see cref="ApplyTrainability"/> and returns the parameters that require gradients (each once).</summary>
    /// <param name="root">The model.</param>
    /// <returns>The trainable parameters, in registration order.</returns>
    /// <exception cref="PeftConfigurationException">A class declares adapters its constructor never created (it did not call
    /// the generated <c>InitializePeft()</c>).</exception>
    public static IEnumerable<Parameter> TrainableParameters(this nn.Module root)
    {
        EnsureInitialized(root);
        root.ApplyTrainability();
        return root.parameters().Concat(root.SharedParameters().Select(p => p.Parameter)).Where(p => p.requires_grad).ToList();
    }

    /// <summary>Applies <see cref="ApplyTrainability"/> and counts trainable and total parameter elements.</summary>
    /// <param name="root">The model.</param>
    /// <returns>The counts; <c>ToString()</c> gives PEFT's <c>print_trainable_parameters</c> line.</returns>
    /// <exception cref="PeftConfigurationException">A class declares adapters its constructor never created (it did not call
    /// the generated <c>InitializePeft()</c>; PEFT0013).</exception>
    public static TrainableParameterSummary GetTrainableSummary(this nn.Module root)
    {
        EnsureInitialized(root);
        root.ApplyTrainability();
        long trainable = 0;
        long all = 0;
        foreach (var p in root.parameters().Concat(root.SharedParameters().Select(s => s.Parameter)))
        {
            long n = p.numel();
            all += n;
            if (p.requires_grad)
            {
                trainable += n;
            }
        }

        return new TrainableParameterSummary(trainable, all);
    }

    /// <summary>Writes PEFT's <c>trainable params: … || all params: … || trainable%: …</c> line.</summary>
    /// <param name="root">The model.</param>
    /// <param name="writer">Where to write (default: <see cref="Console.Out"/>).</param>
    public static void PrintTrainableParameters(this nn.Module root, TextWriter? writer = null)
    {
        var summary = root.GetTrainableSummary();
        (writer ?? Console.Out).WriteLine(summary.ToString());
    }

    /// <summary>All adapted layers of the tree (every kind) with their dotted paths (the root itself has path "").</summary>
    /// <param name="root">The model.</param>
    /// <returns>(path, layer) pairs in registration order.</returns>
    public static IEnumerable<(string Path, AdaptedLayer Layer)> AdaptedLayers(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        return ModuleTree.Layers(root).ToList();
    }

    /// <summary>All adapted embedding layers of the tree (where prompts are prepended) with their dotted paths.</summary>
    /// <param name="root">The model.</param>
    /// <returns>(path, layer) pairs in registration order.</returns>
    public static IEnumerable<(string Path, AdaptedEmbedding Layer)> PromptEmbeddings(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        return ModuleTree.Layers(root).Where(l => l.Layer is AdaptedEmbedding).Select(l => (l.Path, (AdaptedEmbedding)l.Layer)).ToList();
    }

    /// <summary>
    /// Checks every <see cref="IPeftModule"/> of a fully built model (not from generated code: a base class's
    /// <c>InitializePeft()</c> runs before the derived class has created its layers).
    /// </summary>
    internal static void EnsureInitialized(nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        foreach (var node in ModuleTree.Walk(root))
        {
            if (node.Module is IPeftModule peft)
            {
                EnsureDeclaredAdaptersAreWrapped(node.Module, peft.PeftDescriptor);
            }
        }

        // The model is complete here, so adapters whose layers share model-level tensors can get them.
        root.BindSharedTensors();

        // A base weight an adapter rewrote (PiSSA, OLoRA) must still be the residual it left.
        foreach (var (_, layer) in ModuleTree.Layers(root))
        {
            layer.EnsureResidualBase();
        }
    }

    /// <summary>
    /// A class whose constructor never called the generated <c>InitializePeft()</c> has declared adapters that do not
    /// exist: training it would silently fine-tune the whole model. Fail instead, naming the class and the fix.
    /// </summary>
    private static void EnsureDeclaredAdaptersAreWrapped(nn.Module module, PeftModuleDescriptor descriptor)
    {
        if (descriptor.Adapters.Count == 0)
        {
            return;
        }

        Dictionary<string, nn.Module>? children = null;
        foreach (var declaration in descriptor.Adapters)
        {
            children ??= module.named_children().ToDictionary(c => c.name, c => c.module, StringComparer.Ordinal);
            children.TryGetValue(declaration.MemberName, out var child);
            if (child is not AdaptedLayer)
            {
                string found = child is null ? "no registered module of that name" : $"a {child.GetType().Name}";
                throw new PeftConfigurationException(
                    $"{descriptor.TypeName} declares a {declaration.Method} adapter on '{declaration.MemberName}', but the model holds {found} there: " +
                    $"the generated InitializePeft() has not run. Call InitializePeft() at the end of every constructor of {descriptor.TypeName} " +
                    "(instead of RegisterComponents()); see diagnostic PEFT0013.",
                    declaration.MemberName,
                    declaration.AdapterName);
            }
        }
    }
}
