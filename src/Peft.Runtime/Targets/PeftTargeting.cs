using Peft.Targeting;
using System.ComponentModel;
using System.Text;
using Peft.Serialization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Applies a <see cref="PeftTargets"/> configuration to a model: finds the selected linear layers by full dotted name in
/// TorchSharp's module registry (<c>named_children()</c>, no reflection) and has the generated code of each owning
/// <see cref="IPeftTargetable"/> class wrap them (see docs/targets.md).
/// </summary>
public static class PeftTargeting
{
    private const int ListedNames = 16;

    /// <summary>
    /// Resolves <paramref name="targets"/> against <paramref name="model"/> without changing it: every check of
    /// <see cref="ApplyTargets"/> runs, and the full names that would get the adapter are returned.
    /// </summary>
    /// <param name="model">The model (its root module).</param>
    /// <param name="targets">The configuration.</param>
    /// <returns>The plan: <see cref="PeftTargetPlan.Selected"/> lists the layers in module-tree order.</returns>
    /// <exception cref="PeftConfigurationException">Any problem (all of them in one message): an entry that matches no module
    /// (with the nearest names and the model's linear module names), an entry that matches a non-linear module, a selected layer
    /// the generated code cannot reach, a layer that already has an adapter of that name, options that do not fit a layer; or a
    /// class declares adapters its constructor never created (it did not call the generated <c>InitializePeft()</c>; PEFT0013).</exception>
    public static PeftTargetPlan ResolveTargets(this nn.Module model, PeftTargets targets)
        => Resolve(model, targets, reuseEqual: false);

    /// <summary>
    /// Adds adapter <see cref="PeftTargets.AdapterName"/> to every linear layer <paramref name="targets"/> selects, through the
    /// generated <see cref="IPeftTargetable.ApplyPeftTargets"/> of the classes that own them (the same wrapping as attribute
    /// adapters: <see cref="PeftLayers.Wrap"/>, the member replaced and re-registered under its name), then re-applies
    /// trainability (only active adapters and <see cref="TrainableAttribute"/> members train). Everything is checked first:
    /// on an error the model is unchanged.
    /// </summary>
    /// <param name="model">The model (its root module).</param>
    /// <param name="targets">The configuration.</param>
    /// <returns>The full names of the adapted layers, in module-tree order.</returns>
    /// <exception cref="PeftConfigurationException">See <see cref="ResolveTargets"/>.</exception>
    /// <remarks>As with attribute adapters, the first adapter on a layer is its active one; on a model that already has
    /// adapters, call <c>model.SetActiveAdapter(name)</c> to make the new one active everywhere.</remarks>
    public static IReadOnlyList<string> ApplyTargets(this nn.Module model, PeftTargets targets)
    {
        var plan = Resolve(model, targets, reuseEqual: false);
        Apply(model, plan);
        return plan.Selected;
    }

    /// <summary>
    /// Loads a PEFT adapter directory whose <c>target_modules</c> may go beyond the model's attributes: applies the
    /// directory's targets (as <see cref="PeftTargets.Read"/> reads them, except that <c>init_lora_weights</c> is not checked
    /// and a list entry that matches nothing is skipped while another matches, as PEFT loads files; layers that already
    /// have an equal adapter of that name, e.g. from a <see cref="LoRAAttribute"/> with the same rank and alpha, are kept),
    /// then loads the weights with <see cref="AdapterFiles.Load"/>. The targets are resolved before anything changes; when
    /// loading the weights fails, the adapters added here are removed again and trainability is restored. A plain
    /// <c>Linear</c> member it wrapped stays wrapped: an <see cref="AdaptedLayer"/> without adapters computes exactly its
    /// base layer, under the same state-dict names.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The adapter directory (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>).</param>
    /// <param name="adapterName">The adapter name to load into.</param>
    /// <param name="strict">Passed to <see cref="AdapterFiles.Load"/>.</param>
    /// <param name="allowAlreadyMerged">Passed to <see cref="AdapterFiles.Load"/>: load the adapter even when the base weights
    /// already contain it (<see cref="MergedAdapterMetadata"/>).</param>
    /// <returns>What <see cref="AdapterFiles.Load"/> did.</returns>
    /// <exception cref="PeftConfigurationException">The targets do not fit the model (nothing was changed).</exception>
    /// <exception cref="AdapterAlreadyMergedException">The base weights already contain this adapter (nothing was changed).</exception>
    public static AdapterLoadResult LoadAdapterWithTargets(this nn.Module model, string directory, string adapterName = AdapterNames.Default, bool strict = true,
        bool allowAlreadyMerged = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"Adapter directory not found: {directory}");
        string configPath = Path.Combine(directory, AdapterFiles.ConfigFileName);
        var targets = PeftTargets.ForLoading(AdapterConfig.Read(configPath), adapterName);
        var plan = Resolve(model, targets, reuseEqual: true);
        var requiresGrad = model.parameters().Select(p => (p, p.requires_grad)).ToList();
        Apply(model, plan);
        try
        {
            return AdapterFiles.Load(model, directory, adapterName, strict, allowAlreadyMerged);
        }
        catch
        {
            var layers = model.AdaptedLayers().ToDictionary(l => l.Path, l => l.Layer, StringComparer.Ordinal);
            foreach (var path in plan.Selected)
            {
                if (layers.TryGetValue(path, out var layer) && layer.HasAdapter(adapterName)) layer.DeleteAdapter(adapterName);
            }
            foreach (var (parameter, was) in requiresGrad)
            {
                if (parameter.requires_grad != was) parameter.requires_grad = was;
            }
            throw;
        }
    }

    /// <summary>
    /// Replaces the child module registered as <paramref name="name"/> on <paramref name="parent"/> by
    /// <paramref name="replacement"/>, keeping the registration order (TorchSharp's <c>register_module</c> refuses a name
    /// that is taken, and removing then adding would move the child to the end). Called by generated code.
    /// </summary>
    /// <param name="parent">The module that owns the member.</param>
    /// <param name="name">The registered name.</param>
    /// <param name="replacement">The new child.</param>
    [EditorBrowsable(EditorBrowsableState.Never)]
    public static void ReplaceChild(nn.Module parent, string name, nn.Module replacement)
    {
        ArgumentNullException.ThrowIfNull(parent);
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(replacement);
        // A new wrapper is created in training mode; it takes its parent's mode (a model in eval mode stays in eval mode).
        replacement.train(parent.training);
        var children = parent.named_children().ToList();
        int index = children.FindIndex(c => c.name == name);
        if (index < 0)
        {
            parent.register_module(name, replacement);
            return;
        }
        if (ReferenceEquals(children[index].module, replacement)) return;
        for (int i = index; i < children.Count; i++) parent.register_module(children[i].name, null!);
        parent.register_module(name, replacement);
        for (int i = index + 1; i < children.Count; i++) parent.register_module(children[i].name, children[i].module);
    }

    private static void Apply(nn.Module model, PeftTargetPlan plan)
    {
        if (plan.Selected.Count > 0)
        {
            var owners = new List<(string Prefix, IPeftTargetable Owner)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var path in plan.Selected)
            {
                int dot = path.LastIndexOf('.');
                string ownerPath = dot < 0 ? string.Empty : path.Substring(0, dot);
                if (seen.Add(ownerPath)) owners.Add((dot < 0 ? string.Empty : ownerPath + ".", (IPeftTargetable)Find(model, ownerPath)));
            }
            foreach (var (prefix, owner) in owners) owner.ApplyPeftTargets(prefix, plan);
            var missed = plan.Selected.Where(p => !plan.Applied.Contains(p)).ToList();
            if (missed.Count > 0)
                throw new PeftConfigurationException(
                    $"The generated targeting code did not adapt {string.Join(", ", missed)}; rebuild the project so the generated code matches the class.");
        }
        model.BindSharedTensors();
        model.ApplyTrainability();
    }

    private static nn.Module Find(nn.Module root, string path)
    {
        if (path.Length == 0) return root;
        var module = root;
        foreach (var segment in path.Split('.'))
        {
            module = module.named_children().First(c => c.name == segment).module;
        }
        return module;
    }

    /// <summary>One registered module of the tree, as targeting sees it.</summary>
    private sealed record Node(string Path, string Name, nn.Module Module, nn.Module? Parent, PeftLayerKind Kind, bool IsRootChild)
    {
        public PeftTargetMember? Member { get; init; }
        public bool TrainableMember { get; init; }
        public bool FrozenMember { get; init; }
        public string? Reason { get; init; }
    }

    /// <summary>The modules of the tree below the root (<see cref="ModuleTree"/>, so [Freeze]/[Trainable] are inherited
    /// exactly as trainability inherits them), each with its layer kind and, for layers, whether the generated code of
    /// its owner can replace it.</summary>
    private static List<Node> Walk(nn.Module root)
    {
        var nodes = new List<Node>();
        var members = new Dictionary<nn.Module, Dictionary<string, PeftTargetMember>>(ReferenceEqualityComparer.Instance);
        foreach (var tree in ModuleTree.Walk(root))
        {
            if (tree.Parent is null) continue;
            var kind = PeftLayers.KindOf(tree.Module);
            string? reason = null;
            PeftTargetMember? member = null;
            if (kind != PeftLayerKind.None)
            {
                if (!members.TryGetValue(tree.Parent, out var byName))
                {
                    byName = (tree.Parent as IPeftTargetable)?.PeftTargetMembers.ToDictionary(m => m.Name, StringComparer.Ordinal)
                        ?? new Dictionary<string, PeftTargetMember>(StringComparer.Ordinal);
                    members[tree.Parent] = byName;
                }
                byName.TryGetValue(tree.Name, out member);
                reason = member?.NotTargetableReason ?? (member is not null ? null : NotTargetable(tree.Parent, tree.Name));
            }
            nodes.Add(new Node(tree.Path, tree.Name, tree.Module, tree.Parent, kind, ReferenceEquals(tree.Parent, root))
            {
                Member = member,
                TrainableMember = tree.Trainable,
                FrozenMember = tree.Frozen,
                Reason = reason,
            });
        }
        return nodes;
    }

    private static string NotTargetable(nn.Module parent, string name)
    {
        string type = parent.GetType().Name;
        bool container = parent is Sequential
            || type.StartsWith("ModuleList", StringComparison.Ordinal)
            || type.StartsWith("ModuleDict", StringComparison.Ordinal);
        if (container)
        {
            return $"it is element '{name}' of a {type}, which has no member for the generated code to replace (hold the layer in a Module<Tensor, Tensor> member of an [Adaptable] class)";
        }
        return parent switch
        {
            IPeftTargetable =>
                $"the generated code of {type} does not list a member registered as '{name}': it was registered by hand, or it belongs to a class deriving from a generated class (configuration targeting reaches the generated class's own members only)",
            _ =>
                $"its owner {type} is not generated by Peft: mark the class [Adaptable] and partial, type the member Module<Tensor, Tensor>, and call InitializePeft() in its constructor",
        };
    }

    private static PeftTargetPlan Resolve(nn.Module model, PeftTargets targets, bool reuseEqual)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(targets);
        // A class whose declared adapters were never created (no InitializePeft()) would get its plain layers wrapped
        // here, and the missing call would go unnoticed from then on (PEFT0013).
        PeftModel.EnsureInitialized(model);
        string adapterName = targets.AdapterName;
        AdapterNameRules.Validate(adapterName, null, AdaptedLayer.WeightName, AdaptedLayer.BiasName);
        if (targets.Exclude is { Kind: TargetModulesKind.AllLinear })
            throw new PeftConfigurationException("exclude_modules cannot be \"all-linear\".");
        var method = targets.Options.Method;

        var nodes = Walk(model);
        string modelName = model.GetType().Name;
        var errors = new List<string>();
        var selected = new List<Node>();
        var selectedSet = new HashSet<string>(StringComparer.Ordinal);
        void Select(Node node)
        {
            if (selectedSet.Add(node.Path)) selected.Add(node);
        }
        // PEFT applies layers_to_transform to name (and "all-linear") selections, not to a regex.
        bool InLayers(Node node) => TargetModules.InLayers(node.Path, targets.LayersToTransform, targets.LayersPattern);

        switch (targets.Targets.Kind)
        {
            case TargetModulesKind.Names:
                var unmatched = new List<string>();
                foreach (var entry in targets.Targets.Entries)
                {
                    var matches = nodes.Where(n => TargetModules.EntryMatches(entry, n.Path)).ToList();
                    if (targets.IgnoreUnmatchedEntries && matches.Count == 0)
                    {
                        unmatched.Add(entry);
                        continue;
                    }
                    if (CheckMatches($"target_modules entry '{entry}'", entry, matches, nodes, modelName, method, errors))
                    {
                        // PEFT filters by layers_to_transform only the suffix matches, not a module named exactly.
                        foreach (var node in matches.Where(n => n.Path == entry || InLayers(n))) Select(node);
                    }
                }
                if (unmatched.Count == targets.Targets.Entries.Count)
                {
                    // Even a file's list must match something (PEFT: "Target modules ... not found in the base model").
                    foreach (var entry in unmatched)
                        CheckMatches($"target_modules entry '{entry}'", entry, new List<Node>(), nodes, modelName, method, errors);
                }
                break;
            case TargetModulesKind.Regex:
            {
                var matches = nodes.Where(n => targets.Targets.IsMatch(n.Path)).ToList();
                if (CheckMatches($"target_modules {targets.Targets}", null, matches, nodes, modelName, method, errors))
                {
                    foreach (var node in matches) Select(node);
                }
                break;
            }
            default:
                if ((method.LayerKinds & PeftLayerKind.Linear) == 0)
                {
                    errors.Add($"target_modules \"all-linear\" selects linear layers, but [{method.Name}] adapts {method.LayerKinds} layers; name the modules instead.");
                    break;
                }
                foreach (var node in nodes)
                {
                    if (node.Kind != PeftLayerKind.Linear || node.TrainableMember || node.FrozenMember) continue;
                    if (node.IsRootChild && TargetModules.OutputHeadNames.Contains(node.Name, StringComparer.Ordinal)) continue;
                    if (InLayers(node)) Select(node);
                }
                if (selected.Count == 0) errors.Add($"target_modules \"all-linear\" found no linear layer in {modelName} (output heads, [Trainable] and [Freeze] members are left out).");
                break;
        }

        if (errors.Count == 0 && selected.Count == 0 && targets.LayersToTransform.Count > 0)
        {
            errors.Add($"target_modules {targets.Targets} selects nothing in layers_to_transform [{string.Join(", ", targets.LayersToTransform)}]" +
                (targets.LayersPattern.Count > 0 ? $" of layers_pattern [{string.Join(", ", targets.LayersPattern)}]." : "."));
        }

        if (targets.Exclude is { } exclude)
        {
            if (exclude.Kind == TargetModulesKind.Names)
            {
                foreach (var entry in exclude.Entries)
                {
                    if (!nodes.Any(n => TargetModules.EntryMatches(entry, n.Path)))
                        errors.Add($"exclude_modules entry '{entry}' matches no module of {modelName}.{Suggest(entry, nodes)}");
                }
            }
            else if (!nodes.Any(n => exclude.IsMatch(n.Path)))
            {
                errors.Add($"exclude_modules {exclude} matches no module of {modelName}.");
            }
            selected.RemoveAll(n => exclude.IsMatch(n.Path));
            if (errors.Count == 0 && selected.Count == 0)
                errors.Add($"target_modules {targets.Targets} selects nothing once exclude_modules {exclude} is applied.");
        }

        var plan = new List<(string Path, PeftAdapterOptions Options)>();
        var reused = new List<string>();
        foreach (var node in selected)
        {
            if (node.Reason is not null)
            {
                errors.Add($"'{node.Path}' is a {node.Kind.ToString().ToLowerInvariant()} layer but cannot be targeted: {node.Reason}.");
                continue;
            }
            if (node.FrozenMember)
            {
                errors.Add($"'{node.Path}' is marked [Freeze]; an adapter there would never train. Remove [Freeze] or exclude it (exclude_modules).");
                continue;
            }
            var options = targets.OptionsFor(node.Path);
            if (node.Module is AdaptedLayer adapted && adapted.HasAdapter(adapterName))
            {
                var existing = adapted.GetAdapter(adapterName);
                if (reuseEqual && existing.Config.SameUpdate(options))
                {
                    reused.Add(node.Path);
                    continue;
                }
                errors.Add($"'{node.Path}' already has an adapter named '{adapterName}' ({Origin(node, adapterName, existing)}); the configuration would add another. " +
                    "Give the configuration another AdapterName, or remove the existing adapter first (model.DeleteAdapter(name)).");
                continue;
            }
            try
            {
                options.Validate(adapterName, PeftLayers.InfoOf(node.Module, node.Path));
            }
            catch (PeftConfigurationException ex)
            {
                errors.Add(ex.Message);
                continue;
            }
            plan.Add((node.Path, options));
        }

        if (errors.Count > 0)
        {
            var message = new StringBuilder();
            message.Append(errors.Count == 1 ? errors[0] : $"The target configuration does not fit {modelName} ({errors.Count} problems):\n  - " + string.Join("\n  - ", errors));
            message.Append(" Nothing was changed.");
            throw new PeftConfigurationException(message.ToString(), null, adapterName);
        }
        return new PeftTargetPlan(adapterName, plan, reused);
    }

    private static string Origin(Node node, string adapterName, PeftAdapter existing)
    {
        var descriptor = (node.Parent as IPeftModule)?.PeftDescriptor;
        var declared = descriptor?.Adapters.FirstOrDefault(d => d.MemberName == node.Name && d.AdapterName == adapterName);
        return declared is not null
            ? $"declared by [{declared.Method}] on {descriptor!.TypeName}.{node.Name}"
            : $"a {existing.Method.Name} adapter added earlier";
    }

    /// <summary>Checks what one target entry matched; false (with an error) when it matched nothing or a module of a kind
    /// the method does not adapt.</summary>
    private static bool CheckMatches(string what, string? entry, List<Node> matches, List<Node> nodes, string modelName, PeftMethod method, List<string> errors)
    {
        if (matches.Count == 0)
        {
            errors.Add($"{what} matches no module of {modelName}.{(entry is null ? string.Empty : Suggest(entry, nodes))} {Available(nodes, method)}");
            return false;
        }
        var wrongKind = matches.Where(n => (n.Kind & method.LayerKinds) == 0).ToList();
        if (wrongKind.Count > 0)
        {
            errors.Add($"{what} matches {Shorten(wrongKind.Select(n => $"'{n.Path}' ({n.Module.GetType().Name})").ToList())}, which {(wrongKind.Count == 1 ? "is" : "are")} not {Describe(method.LayerKinds)}: " +
                $"[{method.Name}] adapts {Describe(method.LayerKinds)}s only. Name the layers inside instead. {Available(nodes, method)}");
            return false;
        }
        return true;
    }

    private static string Describe(PeftLayerKind kinds) => kinds switch
    {
        PeftLayerKind.Linear => "a linear layer",
        PeftLayerKind.Norm => "a normalisation layer",
        PeftLayerKind.Embedding => "an embedding layer",
        _ => $"a {kinds} layer",
    };

    private static string Available(List<Node> nodes, PeftMethod method)
    {
        var names = nodes.Where(n => (n.Kind & method.LayerKinds) != 0).Select(n => n.Name).Distinct(StringComparer.Ordinal).ToList();
        string what = method.LayerKinds == PeftLayerKind.Linear ? "Linear" : method.LayerKinds.ToString();
        return names.Count == 0 ? $"The model has no {what} layers." : $"{what} modules: " + Shorten(names) + ".";
    }

    private static string Shorten(IReadOnlyList<string> names)
        => names.Count <= ListedNames
            ? string.Join(", ", names)
            : string.Join(", ", names.Take(ListedNames)) + $", ... ({names.Count - ListedNames} more)";

    /// <summary>" Did you mean 'q_proj'?" from the names (or dotted suffixes, for a dotted entry) closest in edit distance.</summary>
    private static string Suggest(string entry, List<Node> nodes)
    {
        int dots = entry.Count(c => c == '.');
        var candidates = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in nodes)
        {
            var parts = node.Path.Split('.');
            if (parts.Length > dots) candidates.Add(string.Join(".", parts.Skip(parts.Length - dots - 1)));
        }
        return NameSuggestions.DidYouMean(entry, candidates);
    }
}
