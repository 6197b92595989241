// wopigate's host page: opens a WOPI client (Collabora Online, ONLYOFFICE Docs, Office for the
// web) in a full-window iframe and answers its PostMessages.
//
// The session comes in the URL's fragment, `#wopi_src=…&access_token=…&access_token_ttl=…`,
// which browsers never send to a server. The page takes it out of the address bar and the
// history at once, then form-POSTs the token into the iframe (never into a URL). It accepts
// messages only from that iframe, on the origin of `wopi_src`.
(function () {
  'use strict';

  var SANDBOX = 'allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox ' +
    'allow-downloads allow-modals allow-top-navigation-by-user-activation';
  var FEATURES = ['clipboard-read', 'clipboard-write', 'fullscreen'];

  var root = document.documentElement;
  var fragment = new URLSearchParams(location.hash.slice(1));
  var session = {
    actionUrl: fragment.get('wopi_src'),
    token: fragment.get('access_token'),
    ttl: fragment.get('access_token_ttl') || '0'
  };
  if (location.hash) {
    history.replaceState(history.state, '', location.pathname + location.search);
  }
  var client = clientOf(session.actionUrl);
  var frame = null;
  if (client && session.token) {
    root.classList.add('opening');
  }
  document.addEventListener('DOMContentLoaded', function () {
    if (client && session.token) {
      open();
    } else if (session.actionUrl || session.token) {
      tell('This link cannot open a document', 'It is incomplete or damaged. Open the document again from your file platform.');
    }
  });

  // The client's action URL and origin, when `wopi_src` is an http(s) URL.
  function clientOf(actionUrl) {
    if (!actionUrl) {
      return null;
    }
    try {
      var url = new URL(actionUrl);
      return url.protocol === 'https:' || url.protocol === 'http:' ? { url: url.href, origin: url.origin } : null;
    } catch (e) {
      return null;
    }
  }

  // A dynamic iframe and a hidden form targeting it (a static iframe may be restored from
  // history with an old token).
  function open() {
    frame = document.createElement('iframe');
    frame.id = 'wopi-client';
    frame.name = 'wopi-client';
    frame.title = 'Document';
    frame.setAttribute('allow', FEATURES.map(function (f) { return f + ' ' + client.origin; }).join('; '));
    frame.setAttribute('sandbox', SANDBOX);
    document.body.appendChild(frame);
    window.addEventListener('message', onMessage);

    var form = document.createElement('form');
    form.method = 'post';
    form.action = client.url;
    form.target = frame.name;
    field(form, 'access_token', session.token);
    field(form, 'access_token_ttl', session.ttl);
    document.body.appendChild(form);
    form.submit();
    form.remove();
    session.token = null;
  }

  function field(form, name, value) {
    var input = document.createElement('input');
    input.type = 'hidden';
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }

  function onMessage(event) {
    if (event.origin !== client.origin || event.source !== frame.contentWindow) {
      return;
    }
    var message = event.data;
    if (typeof message === 'string') {
      try {
        message = JSON.parse(message);
      } catch (e) {
        return;
      }
    }
    if (!message || typeof message.MessageId !== 'string') {
      return;
    }
    switch (message.MessageId) {
      case 'App_LoadingStatus':
      case 'Frame_Ready':
        post('Host_PostmessageReady', {});
        break;
      case 'UI_Close':
        close();
        break;
      case 'UI_FileVersions':
        platformPage(root.dataset.versionsUrl);
        break;
      case 'UI_Sharing':
        platformPage(root.dataset.sharingUrl);
        break;
    }
  }

  function post(id, values) {
    var message = { MessageId: id, SendTime: Date.now(), Values: values };
    frame.contentWindow.postMessage(JSON.stringify(message), client.origin);
  }

  // WOPIGATE_CLOSE_URL, else back to the page that opened the document.
  function close() {
    var closeUrl = root.dataset.closeUrl;
    if (closeUrl) {
      location.assign(closeUrl);
      return;
    }
    if (history.length > 1) {
      history.back();
    }
    // Still here after a moment (nothing to go back to): say so in place of the document.
    setTimeout(function () {
      if (frame) {
        frame.remove();
        frame = null;
      }
      tell('The document is closed', 'You can close this tab.');
    }, 1000);
  }

  // A page of the platform about this file, in a new tab that cannot reach this one.
  function platformPage(template) {
    if (!template) {
      return;
    }
    var url = template.split('{file_id}').join(encodeURIComponent(fileId()));
    window.open(url, '_blank', 'noopener,noreferrer');
  }

  // The file id: from this page's path (/host/{file_id}), else from the WOPISrc in the action URL.
  function fileId() {
    var path = location.pathname.split('/');
    if (path.length === 3 && path[1] === 'host' && path[2]) {
      return decodeURIComponent(path[2]);
    }
    var params = new URL(client.url).searchParams;
    var wopiSrc = null;
    params.forEach(function (value, name) {
      if (name.toLowerCase() === 'wopisrc') {
        wopiSrc = value;
      }
    });
    try {
      return new URL(wopiSrc).pathname.split('/').pop();
    } catch (e) {
      return '';
    }
  }

  function tell(title, text) {
    root.classList.remove('opening');
    document.getElementById('message-title').textContent = title;
    document.getElementById('message-text').textContent = text;
  }
})();
