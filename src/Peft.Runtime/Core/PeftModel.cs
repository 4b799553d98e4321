using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Model-level PEFT operations on any TorchSharp module tree: trainability, parameter summaries, merging, adapter
/// selection and deletion, and prompt-tuning helpers. The tree is walked through <c>named_children()</c> and
/// <c>named_parameters(recurse: false)</c>; nothing is found by reflection.
/// </summary>
public static partial class PeftModel
{
    /// <summary>
    /// Sets <c>requires_grad</c> on every parameter of the tree by the PEFT trainability rule:
    /// <list type="bullet">
    /// <item>parameters of an adapter are trainable while that adapter is active and its layer's adapters are enabled
    /// (inactive adapters are frozen, as in PEFT);</item>
    /// <item>when the tree holds any adapter, every other parameter is frozen unless it lies under a member marked
    /// <see cref="TrainableAttribute"/>;</item>
    /// <item>a member marked <see cref="FreezeAttribute"/>, or a class marked with it, freezes its whole subtree,
    /// adapters included, even inside a <see cref="TrainableAttribute"/> subtree;</item>
    /// <item>when the tree holds no adapter, only the <see cref="FreezeAttribute"/> rule (freeze) and the
    /// <see cref="TrainableAttribute"/> rule (unfreeze) apply; other parameters keep their current setting.</item>
    /// </list>
    /// Members are matched by registered name against each <see cref="IPeftModule.PeftDescriptor"/>. The operation
    /// is idempotent.
    /// </summary>
    /// <param name="root">The model (or subtree) to update.</param>
    public static void ApplyTrainability(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        bool anyAdapters = HasAdapters(root);
        Apply(root, anyAdapters, frozen: false, trainable: false, adapterLive: null);
    }

    /// <summary>Applies <see cref="ApplyTrainability"/> and returns the parameters that require gradients (each once).</summary>
    /// <param name="root">The model.</param>
    /// <returns>The trainable parameters, in registration order.</returns>
    public static IEnumerable<Parameter> TrainableParameters(this nn.Module root)
    {
        EnsureInitialized(root);
        root.ApplyTrainability();
        return root.parameters().Where(p => p.requires_grad).ToList();
    }

    /// <summary>Applies <see cref="ApplyTrainability"/> and counts trainable and total parameter elements.</summary>
    /// <param name="root">The model.</param>
    /// <returns>The counts; <c>ToString()</c> gives PEFT's <c>print_trainable_parameters</c> line.</returns>
    public static TrainableParameterSummary GetTrainableSummary(this nn.Module root)
    {
        EnsureInitialized(root);
        root.ApplyTrainability();
        long trainable = 0;
        long all = 0;
        foreach (var p in root.parameters())
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

    /// <summary>All adapted linear layers of the tree with their dotted paths (the root itself has path "").</summary>
    /// <param name="root">The model.</param>
    /// <returns>(path, layer) pairs in registration order.</returns>
    public static IEnumerable<(string Path, AdaptedLinear Layer)> AdaptedLayers(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        return Collect<AdaptedLinear>(root);
    }

    /// <summary>All prompt-tuning embedding layers of the tree with their dotted paths (the root itself has path "").</summary>
    /// <param name="root">The model.</param>
    /// <returns>(path, layer) pairs in registration order.</returns>
    public static IEnumerable<(string Path, PromptTuningEmbedding Layer)> PromptEmbeddings(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        return Collect<PromptTuningEmbedding>(root);
    }

    private static List<(string Path, T Layer)> Collect<T>(nn.Module root)
        where T : nn.Module
    {
        var list = new List<(string Path, T Layer)>();
        Visit(root, string.Empty, list);
        return list;

        static void Visit(nn.Module module, string path, List<(string Path, T Layer)> list)
        {
            if (module is T layer)
            {
                list.Add((path, layer));
                return;
            }

            if (module is AdaptedLinear or PromptTuningEmbedding)
            {
                return;
            }

            foreach (var (name, child) in module.named_children())
            {
                Visit(child, path.Length == 0 ? name : path + "." + name, list);
            }
        }
    }

    private static bool HasAdapters(nn.Module module)
    {
        switch (module)
        {
            case AdaptedLinear linear:
                return linear.Adapters.Count > 0;
            case PromptTuningEmbedding prompt:
                return prompt.Adapters.Count > 0;
        }

        foreach (var (_, child) in module.named_children())
        {
            if (HasAdapters(child))
            {
                return true;
            }
        }

        return false;
    }

    private static void Apply(nn.Module module, bool anyAdapters, bool frozen, bool trainable, bool? adapterLive)
    {
        var descriptor = (module as IPeftModule)?.PeftDescriptor;
        if (descriptor is { FrozenClass: true })
        {
            frozen = true;
        }

        foreach (var (name, parameter) in module.named_parameters(recurse: false))
        {
            bool memberFrozen = frozen || (descriptor?.IsFrozenMember(name) ?? false);
            bool memberTrainable = trainable || (descriptor?.IsTrainableMember(name) ?? false);
            bool? wanted;
            if (memberFrozen)
            {
                wanted = false;
            }
            else if (adapterLive is bool live)
            {
                wanted = live;
            }
            else if (memberTrainable)
            {
                wanted = true;
            }
            else
            {
                wanted = anyAdapters ? false : null;
            }

            if (wanted is bool requiresGrad && parameter.requires_grad != requiresGrad)
            {
                parameter.requires_grad = requiresGrad;
            }
        }

        foreach (var (name, child) in module.named_children())
        {
            bool childFrozen = frozen || (descriptor?.IsFrozenMember(name) ?? false);
            bool childTrainable = trainable || (descriptor?.IsTrainableMember(name) ?? false);
            bool? live = adapterLive;
            if (live is null)
            {
                if (module is AdaptedLinear layer && child is LinearAdapter adapter)
                {
                    live = layer.IsLive(adapter);
                }
                else if (module is PromptTuningEmbedding embedding && child is PromptTuningAdapter prompt)
                {
                    live = embedding.IsLive(prompt);
                }
            }

            Apply(child, anyAdapters, childFrozen, childTrainable, live);
        }
    }

    /// <summary>
    /// Checks every <see cref="IPeftModule"/> of a fully built model (not from generated code: a base class's
    /// <c>InitializePeft()</c> runs before the derived class has created its layers).
    /// </summary>
    private static void EnsureInitialized(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        if (module is IPeftModule peft)
        {
            EnsureDeclaredAdaptersAreWrapped(module, peft.PeftDescriptor);
        }

        if (module is AdaptedLinear or PromptTuningEmbedding)
        {
            return;
        }

        foreach (var (_, child) in module.named_children())
        {
            EnsureInitialized(child);
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
            bool wrapped = declaration.Method == PeftMethod.PromptTuning ? child is PromptTuningEmbedding : child is AdaptedLinear;
            if (!wrapped)
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
