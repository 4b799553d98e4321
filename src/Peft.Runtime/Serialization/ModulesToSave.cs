using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// PEFT's <c>modules_to_save</c>: whole modules (a classification head) whose trained copies travel in the adapter file.
/// PEFT wraps each such module in a <c>ModulesToSaveWrapper</c> holding one copy per adapter
/// (<c>classifier.modules_to_save.default.weight</c> in memory) and, on save, drops the
/// <c>modules_to_save.{adapter}.</c> segment, so the file key is the module's own state-dict key under the PeftModel:
/// <c>base_model.model.classifier.weight</c> (<c>base_model.classifier.weight</c> for prompt learning, whose PeftModel
/// holds the base model directly). Here the modules are the <c>[Trainable]</c> members, and a model holds one copy of
/// each, shared by all its adapters.
/// </summary>
internal static class ModulesToSave
{
    /// <summary>The names PEFT's <c>PeftModelForSequenceClassification</c> adds to <c>modules_to_save</c> itself.</summary>
    public static readonly string[] SequenceClassificationNames = { "classifier", "score" };

    /// <summary>The prefix of module keys in the file: PEFT's PeftModel path of the base model for <paramref name="method"/>.</summary>
    public static string KeyPrefix(PeftMethod method) => method.IsPromptLearning ? "base_model." : AdapterFiles.KeyPrefix;

    /// <summary>One module to save or load: its path in the model, and its tensors under PEFT's keys.</summary>
    public sealed record Entry(string Path, nn.Module Module, List<(string Key, Tensor Target)> Tensors);

    /// <summary>
    /// The <c>[Trainable]</c> members of the tree that are modules, outermost first and not under <c>[Freeze]</c>, with
    /// their tensors under PEFT's keys. A <c>[Trainable]</c> member that is a bare parameter has no PEFT form
    /// (<c>modules_to_save</c> names modules) and is refused.
    /// </summary>
    public static List<Entry> Trainable(nn.Module model, PeftMethod method, string adapterName)
    {
        var modules = new List<(string Path, nn.Module Module)>();
        var parameters = new List<string>();
        var trainableParents = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in ModuleTree.Walk(model))
        {
            // The outermost [Trainable] modules, not under [Freeze]; a module inside one is saved as part of it.
            bool inside = node.Path.Length > 0 && trainableParents.Contains(ParentPath(node.Path));
            if (node.Trainable)
            {
                trainableParents.Add(node.Path);
                if (!inside && !node.Frozen) modules.Add((node.Path, node.Module));
                continue;
            }

            var descriptor = (node.Module as IPeftModule)?.PeftDescriptor;
            if (descriptor is null || node.Frozen) continue;
            foreach (var (name, _) in node.Module.named_parameters(recurse: false))
            {
                if (descriptor.IsTrainableMember(name) && !descriptor.IsFrozenMember(name)) parameters.Add(Join(node.Path, name));
            }
        }

        if (parameters.Count > 0)
        {
            throw new PeftConfigurationException(
                $"[Trainable] parameter member(s) {string.Join(", ", parameters.Select(p => "'" + p + "'"))} cannot be saved in PEFT's adapter format: its " +
                "modules_to_save holds whole modules. Wrap the parameter in a module, or save with AdapterSaveOptions.SaveTrainableMembers = false " +
                "and keep it with ModelWeights.", parameters[0], adapterName);
        }

        var adapterParameters = new HashSet<object>(model.AdapterParameters(), ReferenceEqualityComparer.Instance);
        string prefix = KeyPrefix(method);
        return modules.Select(m => new Entry(m.Path, m.Module, Tensors(m.Module, prefix + m.Path + ".", adapterParameters))).ToList();

        static string ParentPath(string path)
        {
            int dot = path.LastIndexOf('.');
            return dot < 0 ? string.Empty : path[..dot];
        }
    }

    /// <summary>
    /// The <c>modules_to_save</c> entries that select exactly <paramref name="entries"/> under PEFT's rule: a module is
    /// selected when its name in the PeftModel (<see cref="KeyPrefix"/> + path, e.g. <c>base_model.model.classifier</c>)
    /// ends with an entry, a plain suffix without a dot boundary. The entry is the last path segment when that selects
    /// no other module, else the path, else the PeftModel name itself (<c>base_model.model.head</c> when a
    /// <c>lm_head</c> would also end with <c>head</c>).
    /// </summary>
    public static List<string> Names(nn.Module model, IReadOnlyList<Entry> entries, PeftMethod method, string adapterName)
    {
        var chosen = new HashSet<string>(entries.Select(e => e.Path), StringComparer.Ordinal);
        var paths = ModuleTree.Walk(model).Where(n => n.Path.Length > 0).Select(n => n.Path).ToList();
        string prefix = KeyPrefix(method);
        bool SelectsOnlyChosen(string name) => paths.Where(p => (prefix + p).EndsWith(name, StringComparison.Ordinal)).All(chosen.Contains);

        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var entry in entries)
        {
            string shortName = entry.Path[(entry.Path.LastIndexOf('.') + 1)..];
            if (SelectsOnlyChosen(shortName)) names.Add(shortName);
            else if (SelectsOnlyChosen(entry.Path)) names.Add(entry.Path);
            else if (SelectsOnlyChosen(prefix + entry.Path)) names.Add(prefix + entry.Path);
            else
            {
                var others = paths.Where(p => (prefix + p).EndsWith(prefix + entry.Path, StringComparison.Ordinal) && !chosen.Contains(p));
                throw new PeftConfigurationException(
                    $"[Trainable] module '{entry.Path}' cannot be named in modules_to_save without also selecting {string.Join(", ", others)} " +
                    "(PEFT selects every module whose name ends with the entry). Rename one of them.", entry.Path, adapterName);
            }
        }

        return names.ToList();
    }

    /// <summary>
    /// The modules a config's <c>modules_to_save</c> selects in <paramref name="model"/> (PEFT's plain suffix match on the
    /// module's PeftModel name, <see cref="KeyPrefix"/> + path; a module inside another selected one belongs to the
    /// outer one), with the tensors the file must hold for them.
    /// A name that selects nothing is an error, except <c>classifier</c>/<c>score</c> of a <c>SEQ_CLS</c> config:
    /// PEFT adds both to every sequence-classification config, and a model has at most one of them.
    /// </summary>
    public static List<Entry> FromConfig(nn.Module model, AdapterConfig config, PeftMethod method, string source)
    {
        var tree = ModuleTree.Walk(model).Where(n => n.Path.Length > 0).Select(n => (n.Path, n.Module)).ToList();
        string prefix = KeyPrefix(method);
        var selected = new List<(string Path, nn.Module Module)>();
        var unknown = new List<string>();
        foreach (var name in config.ModulesToSave.Distinct(StringComparer.Ordinal))
        {
            var matches = name.Length == 0 ? new List<(string Path, nn.Module Module)>() : tree.Where(m => (prefix + m.Path).EndsWith(name, StringComparison.Ordinal)).ToList();
            if (matches.Count == 0)
            {
                bool automatic = config.TaskType == "SEQ_CLS" && SequenceClassificationNames.Contains(name, StringComparer.Ordinal);
                if (!automatic) unknown.Add(name);
                continue;
            }

            foreach (var match in matches)
            {
                if (!selected.Any(s => s.Path == match.Path)) selected.Add(match);
            }
        }

        if (unknown.Count > 0)
        {
            throw new AdapterFormatException(
                $"{source}: modules_to_save names {string.Join(", ", unknown.Select(n => "\"" + n + "\""))}, which match no module of the model " +
                "(PEFT selects modules whose name ends with the entry); nothing was loaded.");
        }

        // Outermost only: PEFT wraps the outer module, and the inner one's tensors are part of its state dict.
        var outer = selected.Where(s => !selected.Any(o => s.Path.StartsWith(o.Path + ".", StringComparison.Ordinal))).ToList();
        var adapterParameters = new HashSet<object>(model.AdapterParameters(), ReferenceEqualityComparer.Instance);
        return outer.Select(m => new Entry(m.Path, m.Module, Tensors(m.Module, prefix + m.Path + ".", adapterParameters))).ToList();
    }

    /// <summary>
    /// A module's state-dict tensors (parameters and persistent buffers) under <paramref name="prefix"/>; the parameters
    /// of adapters inside it are left out (they are the adapter's own tensors).
    /// </summary>
    private static List<(string Key, Tensor Target)> Tensors(nn.Module module, string prefix, HashSet<object> adapterParameters)
    {
        var result = new List<(string Key, Tensor Target)>();
        var persistent = new HashSet<string>(module.state_dict().Keys, StringComparer.Ordinal);
        foreach (var (name, parameter) in module.named_parameters())
        {
            if (!adapterParameters.Contains(parameter)) result.Add((prefix + name, parameter));
        }

        foreach (var (name, buffer) in module.named_buffers())
        {
            if (persistent.Contains(name)) result.Add((prefix + name, buffer));
        }

        return result;
    }

    private static string Join(string path, string name) => path.Length == 0 ? name : path + "." + name;
}
